# Register access for I2C register-map sensors: one-byte writes and buffer reads, bus errors as driver errors.
from cnode.drivers.errors import bus_error


class I2CReg:
    """Base of BME280, QMC5883L and VL53L1X. Subclasses name themselves (_name) and may use 16-bit register
    addresses (_addrsize). A bus error marks the chip for a fresh set-up (_need_init) before it is raised."""

    _name = "I2C device"
    _addrsize = 8

    def __init__(self, i2c, addr):
        self._i2c = i2c
        self.addr = addr
        self._b1 = bytearray(1)
        self._need_init = True

    def _bus(self, e):
        self._need_init = True
        return bus_error(e, self._name, self.addr)

    def _write(self, reg, val):
        b = self._b1
        b[0] = val
        try:
            self._i2c.writeto_mem(self.addr, reg, b, addrsize=self._addrsize)
        except OSError as e:
            raise self._bus(e)

    def _read(self, reg, buf):
        try:
            self._i2c.readfrom_mem_into(self.addr, reg, buf, addrsize=self._addrsize)
        except OSError as e:
            raise self._bus(e)
