"""The local AWS IoT Jobs service: the spec's device API over MQTT, driven from Python or HTTP."""
