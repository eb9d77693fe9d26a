# micropython-lib's LoRa driver (lora-sx127x / lora-sx126x with lora-sync, installed by `citynode flash`)
# built from a board file's radio section, with what the driver leaves to its caller done for this board.
from cnode.lorawan.region import JOIN_FREQS_KHZ


def radio(r, machine):
    """micropython-lib's driver (lora-sx127x / lora-sx126x with lora-sync, installed by `citynode flash`) for
    the board's radio section, set up as the board is wired: the SX1276 on the PA pin that reaches the antenna,
    the SX1262 with its TCXO on DIO3, and both chips' image calibrated for 863-870 MHz (the driver does
    neither by itself)."""
    import lora  # type: ignore

    Pin = machine.Pin
    p = r["pins"]
    spi = machine.SPI(1, baudrate=2000000, sck=Pin(p["sck"]), mosi=Pin(p["mosi"]), miso=Pin(p["miso"]))
    cs = Pin(p["cs"], Pin.OUT, value=1)
    if r["type"] == "sx1276":
        m = lora.SX1276(spi, cs, dio0=Pin(p["dio0"], Pin.IN), dio1=Pin(p["dio1"], Pin.IN),
                        reset=Pin(p["reset"], Pin.OUT))
        # the PA pin first: output_power (set by the MAC on every configure) is mapped onto it
        m.configure({"tx_ant": r["tx_ant"], "freq_khz": JOIN_FREQS_KHZ[0]})
    else:
        m = lora.SX1262(spi, cs, busy=Pin(p["busy"], Pin.IN), dio1=Pin(p["dio1"], Pin.IN),
                        reset=Pin(p["reset"], Pin.OUT), dio3_tcxo_millivolts=r.get("dio3_tcxo_millivolts"))
        m.configure({"freq_khz": JOIN_FREQS_KHZ[0]})
        m.calibrate()  # RC oscillators, PLL, ADC (SX1261/2 DS 13.1.12)
    m.calibrate_image()  # for the band of the configured frequency: 863-870 MHz in EU868
    return m
