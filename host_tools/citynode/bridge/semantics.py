"""What each channel means, for data platforms: the observed property (label, definition URI), the unit (UCUM
code, name, definition URI) and the O&M observation type. Host-side only: the node needs none of it."""
from __future__ import annotations

from dataclasses import dataclass

from citynode.payload.channels import CHANNELS

QK = "http://qudt.org/vocab/quantitykind/"
UNIT = "http://qudt.org/vocab/unit/"
EEA = "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/"  # the EEA's air-quality pollutant codes
OWN = "urn:citynode:channel:"  # quantities no public vocabulary names: defined by docs/channels in this project
OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
MEASUREMENT, COUNT, CATEGORY = OM + "OM_Measurement", OM + "OM_CountObservation", OM + "OM_CategoryObservation"


@dataclass(frozen=True)
class Meaning:
    label: str
    description: str
    definition: str  # the observed property's URI
    ucum: str  # the unit's UCUM code
    unit_name: str
    unit_definition: str
    observation_type: str = MEASUREMENT


_COUNTS = ("{count}", "count", UNIT + "NUM", COUNT)
MEANINGS: dict[str, Meaning] = {
    "temperature": Meaning("Air temperature", "Temperature of the air at the node", QK + "Temperature",
                           "Cel", "degree Celsius", UNIT + "DEG_C"),
    "humidity": Meaning("Relative humidity", "Relative humidity of the air at the node", QK + "RelativeHumidity",
                        "%", "percent", UNIT + "PERCENT"),
    "pressure": Meaning("Air pressure", "Barometric pressure at the node (not reduced to sea level)",
                        QK + "AtmosphericPressure", "Pa", "pascal", UNIT + "PA"),
    "pm1": Meaning("PM1", "Mass concentration of particulate matter < 1 um", EEA + "6002",
                   "ug/m3", "microgram per cubic metre", UNIT + "MicroGM-PER-M3"),
    "pm2_5": Meaning("PM2.5", "Mass concentration of particulate matter < 2.5 um", EEA + "6001",
                     "ug/m3", "microgram per cubic metre", UNIT + "MicroGM-PER-M3"),
    "pm10": Meaning("PM10", "Mass concentration of particulate matter < 10 um", EEA + "5",
                    "ug/m3", "microgram per cubic metre", UNIT + "MicroGM-PER-M3"),
    "co2": Meaning("CO2", "Carbon dioxide in the air, by volume", EEA + "71",
                   "[ppm]", "part per million", UNIT + "PPM"),
    "noise_laeq": Meaning("Noise LAeq", "A-weighted equivalent continuous sound level over the interval",
                          QK + "SoundPressureLevel", "dB", "A-weighted decibel", UNIT + "DeciB_A"),
    "noise_lamax": Meaning("Noise LAmax", "Highest A-weighted sound level in the interval",
                           QK + "SoundPressureLevel", "dB", "A-weighted decibel", UNIT + "DeciB_A"),
    "pedestrians": Meaning("Pedestrians", "Pedestrians counted in the interval", OWN + "pedestrians", *_COUNTS),
    "bikes": Meaning("Bicycles", "Bicycles counted in the interval", OWN + "bikes", *_COUNTS),
    "vehicles": Meaning("Vehicles", "Motor vehicles counted in the interval", OWN + "vehicles", *_COUNTS),
    "occupancy": Meaning("Occupancy", "Share of the observed parking spaces that are taken", OWN + "occupancy",
                         "%", "percent", UNIT + "PERCENT"),
    "distance": Meaning("Distance", "Distance from the sensor to the nearest object", QK + "Length",
                        "m", "metre", UNIT + "M"),
    "latitude": Meaning("Latitude", "WGS 84 latitude of the node", QK + "Latitude", "deg", "degree",
                        UNIT + "DEG"),
    "longitude": Meaning("Longitude", "WGS 84 longitude of the node", QK + "Longitude", "deg", "degree",
                         UNIT + "DEG"),
    "battery": Meaning("Battery voltage", "Voltage of the node's battery", QK + "Voltage", "V", "volt",
                       UNIT + "V"),
    "parked": Meaning("Parked", "1 when a vehicle is in the space, 0 when it is free", OWN + "parked", *_COUNTS),
    "reboot_reason": Meaning("Reboot reason", "Why the node last started (0 unknown, 1 power on, 2 hard reset, "
                             "3 watchdog, 4 deep sleep, 5 soft reset, 6 brown-out)", OWN + "reboot_reason",
                             "1", "code", UNIT + "UNITLESS", CATEGORY),
    "fw_version": Meaning("Firmware version", "The node's firmware version as major*10000+minor*100+patch",
                          OWN + "fw_version", "1", "code", UNIT + "UNITLESS", CATEGORY),
    "queue_depth": Meaning("Queue depth", "Readings waiting in the node's flash queue", OWN + "queue_depth",
                           *_COUNTS),
    "dropped": Meaning("Dropped readings", "Readings the node had to drop (queue full) since it started",
                       OWN + "dropped", *_COUNTS),
    "crashes": Meaning("Failed boots", "Boots that failed since power-on", OWN + "crashes", *_COUNTS),
}


def meaning(channel: str) -> Meaning:
    try:
        return MEANINGS[channel]
    except KeyError:
        raise KeyError(f"channel {channel!r} has no meaning for data platforms (citynode.bridge.semantics)") from None


def missing() -> list[str]:
    """Channels of the registry that have no entry here (a test keeps this empty)."""
    return [c.name for c in CHANNELS if c.name not in MEANINGS]
