"""Greengrass packaging: build the three components and publish them to an AWS account."""
