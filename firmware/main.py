# main.py: start the citynode firmware on a board (the board file is /board.json, keys are in NVS).
import machine
import time

from cnode import runner

runner.main(machine, time)
