"""Index versions in S3: publish, list and roll back; the LATEST pointer devices follow."""
