"""The worker floor: the one model thread with its queue, the models it has loaded, and the
round runner that turns stored jobs into committed rounds."""
