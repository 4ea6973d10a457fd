"""Real remote files: ``registry`` names them with sizes and checksums and
caches them; ``download`` fetches one atomically, verifying as it writes."""
