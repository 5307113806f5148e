"""Edge visual search: the Greengrass components and the code they share."""
