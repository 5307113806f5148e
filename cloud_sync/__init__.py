"""Cloud and laptop side: build, evaluate and publish catalog indexes."""
