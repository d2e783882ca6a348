"""Back-office for the charging network, one module per topic.

Admin classes present data and call services: every write goes through
``stations.services`` or the remote-command service (``stations.commands``),
the same functions the OCPP and mobile consumers use. Importing the modules
registers their admin classes (Django's autodiscovery imports this package).
"""

from stations.admin import processes, stations, tariffs, tokens, transactions

__all__ = ["processes", "stations", "tariffs", "tokens", "transactions"]
