from runtime import main

from . import APPLIANCE

main(APPLIANCE)
