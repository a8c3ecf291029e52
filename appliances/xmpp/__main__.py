"""``python -m appliances.xmpp``: run the XMPP appliance (``--help`` lists its options)."""

from runtime import main

from . import APPLIANCE

if __name__ == "__main__":
    main(APPLIANCE)
