"""Stand-ins: small modules an image carries under a standard module's name
(``[modules] stand_in`` in an appliance's manifest.toml), for a module that the
appliance or its libraries import but never use.  Each one defines what its
importers read at import time and raises a clear error on use.  They are
compiled into images as top-level modules; nothing imports them from here.
"""
