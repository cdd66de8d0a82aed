"""regen-sync: "data fixed" events on Kafka → Zuora / SoftwareOne regeneration → outcome events."""
