# What each twin draws: a twin reports its chip's power state as the driver puts it there; a meter (the
# simulator's, citynode.energy.meter) integrates the time in each state. MicroPython-compatible: the radio
# twins also run inside a MicroPython node process, where no meter is attached and reporting costs nothing.


class Powered:
    """Mixin for a twin. Call `self._power(state)` whenever the chip changes power state (a command, a pin, a
    supply rail). `detail` qualifies a state whose current depends on a setting (the radio's TX: the PA pin
    and dBm as "PA_BOOST:14"). A state that ends by itself (a forced measurement) gives `for_us`, and the
    state the chip returns to then as `then`; the meter splits the time at that moment."""

    meter = None  # set by Meter.watch
    power_state = "off"
    power_detail = None

    def _power(self, state, detail=None, for_us=0, then=None):
        m = self.meter
        if m is not None:
            m.change(self, state, detail, for_us, then)
        if for_us and then is not None:
            self.power_state = then
            self.power_detail = None
        else:
            self.power_state = state
            self.power_detail = detail
