"""Fleet usage reports from the telemetry records the IoT rule stores in S3."""
