"""The virtual site: a string of simulated loggers that lives across commands.

A site is a process (``smartlogger sim site start DIR``) that holds one simulated logger
per block of a virtual battery string, keeps everything in its state directory ``DIR``
and resumes from it after a restart (or a crash), and is reached only as hardware is:
NFC through nfcpy's ``udp`` driver (``walk``), BLE through Bumble virtual controllers
linked to the field tool's process over HCI (``radio``). docs/SIMULATOR.md describes it.

- ``state``: the state directory (definition, lock, checkpoint, journals, flash images);
- ``world``: the battery, the loggers, virtual time, load bank, faults, ground truth;
- ``walk``: the NFC walk along the string (tags presented one tap at a time);
- ``radio``: the site's air, the loggers' GATT servers, the phones' HCI port;
- ``server``: the process: control exchange, ticking, start-up and shutdown;
- ``launch``: starting a site in the background and waiting until it is reachable.
"""
