"""What runs the kiosk on one machine and never ships: the nucleus stand-in, the demo runner, benchmarks."""
