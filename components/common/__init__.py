"""Code shared by the three components and cloud_sync (one place, so formats cannot drift)."""
