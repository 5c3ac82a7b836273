"""Cases API: read cases and their status, raise an inquiry, read the catalog of service processes."""
