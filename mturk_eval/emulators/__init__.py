"""Local emulators of the crowd platforms' APIs, served by one local server process."""
