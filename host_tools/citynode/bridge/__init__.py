"""From a network server's MQTT integration to the city's platform: SenML on MQTT or OGC SensorThings, each uplink once."""
