"""The stores layer, beside the domain: the I/O that flows, tasks and the price API share.

- ``stores.registry_store``: where registry records are kept (a folder, or S3), read and
  conditionally created; ``pricing.registry`` says what a record is and what is served.
- ``stores.dvc_remote``: artifacts read from the DVC remote by their recorded md5, verified.
- ``stores.settings``: every ``PRICELINEAGE_*`` variable and ``params.yaml`` orchestration
  setting, resolved once (``python -m flows.lineage_cli settings`` prints them).

``pricing/`` never imports this package (``tests/test_layers.py``).
"""
