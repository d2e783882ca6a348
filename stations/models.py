"""Charging network: stations, their EVSEs and connectors, tokens, transactions and meter samples.

The vocabulary is OCPP-version neutral: a station has EVSEs, an EVSE has
connectors. An OCPP 1.6 connector *n* is EVSE *n* with connector 1, and 1.6's
connector 0 is the station itself (a Connector row with no EVSE). A token
(``IdTag``) has a type and a group id; a transaction has the CSMS's integer id
and the charger's own id (``charger_transaction_id``).

Models stay portable (no raw SQL, no database-specific field types) so the
same schema runs on SQLite, PostgreSQL and, one day, MongoDB.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models

from stations.actors import Actor, ActorKind


class RegistrationStatus(models.TextChoices):
    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class ConnectorStatus(models.TextChoices):
    """OCPP 1.6 ChargePointStatus, and 2.0.1's Occupied (a 2.0.1 connector with a transaction is shown by
    its TransactionEvent's chargingState: Charging, SuspendedEV, SuspendedEVSE)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"


class OcppVersion(models.TextChoices):
    V16 = "1.6", "OCPP 1.6J"
    V201 = "2.0.1", "OCPP 2.0.1"


class OperationalStatus(models.TextChoices):
    """What the CSMS last set with ChangeAvailability (1.6's Operative/Inoperative availability type)."""

    OPERATIVE = "Operative"
    INOPERATIVE = "Inoperative"


class TokenType(models.TextChoices):
    """OCPP 2.0.1 IdTokenEnumType; a 1.6 idTag, having no type, is read as ISO14443 (an RFID card's UID)."""

    ISO14443 = "ISO14443", "ISO14443"
    ISO15693 = "ISO15693", "ISO15693"
    EMAID = "eMAID", "eMAID"
    CENTRAL = "Central", "Central"
    KEY_CODE = "KeyCode", "KeyCode"
    LOCAL = "Local", "Local"
    MAC_ADDRESS = "MacAddress", "MacAddress"
    NO_AUTHORIZATION = "NoAuthorization", "NoAuthorization"


class IdTagStatus(models.TextChoices):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class Tariff(models.Model):
    name = models.CharField(max_length=100)
    price_per_kwh = models.DecimalField(max_digits=10, decimal_places=4)
    currency = models.CharField(max_length=3, default="EUR", help_text="ISO 4217 code")
    price_per_minute = models.DecimalField(
        max_digits=10, decimal_places=4, default=Decimal("0"), help_text="Time fee per minute"
    )
    session_fee = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("0"), help_text="Fixed fee per session"
    )
    is_default = models.BooleanField(
        default=False, help_text="Used for stations that have no tariff of their own"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_tariff",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.price_per_kwh} {self.currency}/kWh)"


class Station(models.Model):
    id = models.CharField(max_length=64, primary_key=True, help_text="Charge point identity, e.g. fora072")
    name = models.CharField(max_length=100, blank=True)
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    serial_number = models.CharField(max_length=50, blank=True)
    firmware_version = models.CharField(max_length=50, blank=True)
    iccid = models.CharField(max_length=20, blank=True)
    imsi = models.CharField(max_length=20, blank=True)
    meter_type = models.CharField(max_length=50, blank=True)
    meter_serial_number = models.CharField(max_length=50, blank=True)
    registration_status = models.CharField(
        max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.ACCEPTED
    )
    ocpp_version = models.CharField(
        max_length=8, choices=OcppVersion.choices, default=OcppVersion.V16,
        help_text="The OCPP version of its last connection",
    )
    is_online = models.BooleanField(default=False)
    # The channel of the consumer holding this station's socket: remote
    # commands are sent there, never to a group (group memberships expire).
    channel_name = models.CharField(max_length=200, blank=True, editable=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    last_activity = models.DateTimeField(null=True, blank=True)
    password_hash = models.CharField(
        max_length=128, blank=True, editable=False, help_text="Security profile 1 (HTTP Basic)"
    )
    # A password sent to the charger (2.0.1 SetVariables BasicAuthPassword) and not yet confirmed: accepted
    # beside password_hash until the charger answers, so that its reconnect with the new one never races the answer.
    next_password_hash = models.CharField(max_length=128, blank=True, editable=False)
    tariff = models.ForeignKey(
        Tariff, null=True, blank=True, on_delete=models.SET_NULL, help_text="Empty: the default tariff"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        permissions = [("operate_station", "Can send commands to the charger and accept or reject it")]

    def __str__(self) -> str:
        return self.id


class Evse(models.Model):
    """An EVSE: what charges one vehicle at a time, with one or more connectors.

    Its connectors' states are on the connectors (OCPP reports status per
    connector); the EVSE holds what is set for all of them at once.
    """

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="evses")
    number = models.PositiveIntegerField(help_text="OCPP 2.0.1 evseId (>= 1); for 1.6 the connectorId")
    availability = models.CharField(
        max_length=16, choices=OperationalStatus.choices, default=OperationalStatus.OPERATIVE
    )

    class Meta:
        ordering = ["station_id", "number"]
        verbose_name = "EVSE"
        constraints = [models.UniqueConstraint(fields=["station", "number"], name="unique_evse_number")]

    def __str__(self) -> str:
        return f"{self.station_id}/{self.number}"


class Connector(models.Model):
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="connectors")
    # Connector 0 (no EVSE) is the station itself; its status is the station's.
    evse = models.ForeignKey(Evse, null=True, blank=True, on_delete=models.CASCADE, related_name="connectors")
    number = models.PositiveIntegerField(help_text="Its EVSE's number (OCPP 1.6 connectorId); 0 is the station itself")
    connector_id = models.PositiveIntegerField(default=1, help_text="The connector's number within its EVSE")
    status = models.CharField(
        max_length=16, choices=ConnectorStatus.choices, default=ConnectorStatus.UNAVAILABLE
    )
    error_code = models.CharField(max_length=32, default="NoError")
    info = models.CharField(max_length=50, blank=True)
    vendor_error_code = models.CharField(max_length=50, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    current_transaction = models.ForeignKey(
        "Transaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["station_id", "number", "connector_id"]
        constraints = [
            models.UniqueConstraint(fields=["station", "number", "connector_id"], name="unique_connector_number")
        ]

    def __str__(self) -> str:
        return f"{self.station_id}#{self.number}"


class IdTag(models.Model):
    """A token that may authorise charging (1.6's idTag, 2.0.1's idToken)."""

    # 36: 2.0.1's idToken (CiString36); a 1.6 charger's idTag is at most 20, which its adapter enforces.
    id_tag = models.CharField(max_length=36, unique=True, help_text="RFID uid or app tag (at most 20 for OCPP 1.6)")
    type = models.CharField(max_length=16, choices=TokenType.choices, default=TokenType.ISO14443)
    status = models.CharField(max_length=16, choices=IdTagStatus.choices, default=IdTagStatus.ACCEPTED)
    expiry_date = models.DateTimeField(null=True, blank=True)
    group_id = models.CharField(
        max_length=36, blank=True, help_text="Tokens of one group may stop each other's sessions (1.6 parentIdTag)"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id_tag"]
        verbose_name = "idTag (token)"
        verbose_name_plural = "idTags (tokens)"

    def __str__(self) -> str:
        return self.id_tag


class Transaction(models.Model):
    """A charging session.

    Its integer id is the CSMS's (the mobile API's transactionId, 1.6's
    transactionId); ``charger_transaction_id`` is the charger's: the string a
    2.0.1 charger chooses, for 1.6 the integer id as text.
    """

    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="transactions")
    evse = models.ForeignKey(Evse, null=True, blank=True, on_delete=models.PROTECT, related_name="transactions")
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="transactions")
    charger_transaction_id = models.CharField(max_length=36, blank=True, help_text="The charger's transaction id")
    id_tag = models.CharField(max_length=36)
    meter_start = models.BigIntegerField(help_text="Wh")
    meter_stop = models.BigIntegerField(null=True, blank=True, help_text="Wh")
    started_at = models.DateTimeField()
    # The charger's own start time, as sent, when it was not plausible (started_at
    # is then the CSMS's receive time): how a re-sent StartTransaction is recognised.
    reported_start = models.CharField(
        max_length=40, blank=True, help_text="The charger's start timestamp when its clock was not believed"
    )
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    energy_wh = models.BigIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    tariff = models.ForeignKey(Tariff, null=True, blank=True, on_delete=models.SET_NULL)
    reservation_id = models.IntegerField(null=True, blank=True)
    # Who started it (stations.actors): "apikey:12", "user:7", "" for the charger on its own.
    started_by = models.CharField(max_length=100, blank=True)
    started_by_name = models.CharField(max_length=150, blank=True, help_text="The starter's name at the time")
    start_correlation_id = models.CharField(max_length=100, blank=True)
    stop_correlation_id = models.CharField(max_length=100, blank=True)
    # OCPP 2.0.1 TransactionEvent: the charger's chargingState and the highest seqNo seen for it.
    charging_state = models.CharField(max_length=16, blank=True)
    last_seq_no = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # The same StartTransaction re-sent after a reconnect must find the
            # row it created, never make a second one.
            models.UniqueConstraint(
                fields=["station", "connector", "id_tag", "meter_start", "started_at"],
                name="unique_start_transaction",
            ),
            models.UniqueConstraint(
                fields=["station", "charger_transaction_id"],
                condition=~models.Q(charger_transaction_id=""),
                name="unique_charger_transaction_id",
            ),
        ]
        indexes = [models.Index(fields=["station", "stopped_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.station_id}/{self.connector.number if self.connector_id else '-'}"

    @property
    def is_active(self) -> bool:
        return self.stopped_at is None

    @property
    def starter(self) -> Actor:
        return Actor.parse(self.started_by, self.started_by_name)

    @property
    def started_by_key_id(self) -> int | None:
        return self.starter.id_of(ActorKind.API_KEY)

    @property
    def started_by_user_id(self) -> int | None:
        return self.starter.id_of(ActorKind.USER)

    @property
    def started_by_user(self) -> AbstractBaseUser | None:
        """The staff user who started it, if still there (one query)."""
        user_id = self.started_by_user_id
        return None if user_id is None else get_user_model().objects.filter(pk=user_id).first()

    @property
    def duration_seconds(self) -> int | None:
        if self.stopped_at is None:
            return None
        return int((self.stopped_at - self.started_at).total_seconds())


class MeterSample(models.Model):
    """One MeterValue (one timestamp) of a connector, with the common measurands."""

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="meter_samples")
    connector_number = models.PositiveIntegerField()
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.CASCADE, related_name="meter_samples"
    )
    timestamp = models.DateTimeField()
    context = models.CharField(max_length=32, blank=True)
    energy_wh = models.FloatField(null=True, blank=True, help_text="Energy.Active.Import.Register")
    power_w = models.FloatField(null=True, blank=True)
    current_a = models.FloatField(null=True, blank=True)
    voltage_v = models.FloatField(null=True, blank=True)
    soc = models.FloatField(null=True, blank=True, help_text="State of charge, %")
    sampled_values = models.JSONField(default=list, help_text="Every sampledValue as the charger sent it")

    class Meta:
        ordering = ["timestamp"]
        constraints = [
            # Chargers re-send queued MeterValues after a reconnect, and repeat
            # them in StopTransaction.transactionData: keep each reading once.
            models.UniqueConstraint(
                fields=["station", "connector_number", "timestamp"], name="unique_meter_sample"
            )
        ]
        indexes = [models.Index(fields=["transaction", "timestamp"])]


class TransactionEvent(models.Model):
    """One OCPP 2.0.1 TransactionEventRequest, kept in seqNo order: a retried or replayed one (same
    transaction and seqNo) is recognised and answered without being applied twice."""

    transaction = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="events")
    seq_no = models.PositiveIntegerField()
    event_type = models.CharField(max_length=8)  # Started, Updated, Ended
    trigger_reason = models.CharField(max_length=32)
    timestamp = models.DateTimeField()
    offline = models.BooleanField(default=False)
    number_of_phases_used = models.PositiveSmallIntegerField(null=True, blank=True)
    charging_state = models.CharField(max_length=16, blank=True)
    stopped_reason = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["transaction_id", "seq_no"]
        constraints = [models.UniqueConstraint(fields=["transaction", "seq_no"], name="unique_transaction_event")]


class DeviceVariable(models.Model):
    """One attribute of one variable of a 2.0.1 station's device model (NotifyReport, GetVariables,
    SetVariables). Absent EVSE and connector are 0."""

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="device_variables")
    component = models.CharField(max_length=50)
    component_instance = models.CharField(max_length=50, blank=True)
    evse = models.PositiveIntegerField(default=0)
    connector = models.PositiveIntegerField(default=0)
    variable = models.CharField(max_length=50)
    variable_instance = models.CharField(max_length=50, blank=True)
    attribute_type = models.CharField(max_length=8, default="Actual")  # Actual, Target, MinSet, MaxSet
    value = models.CharField(max_length=2500, blank=True)
    mutability = models.CharField(max_length=10, default="ReadWrite")  # ReadOnly, WriteOnly, ReadWrite
    persistent = models.BooleanField(default=False)
    constant = models.BooleanField(default=False)
    data_type = models.CharField(max_length=20, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    min_limit = models.FloatField(null=True, blank=True)
    max_limit = models.FloatField(null=True, blank=True)
    values_list = models.CharField(max_length=1000, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["station_id", "component", "component_instance", "evse", "connector", "variable",
                    "variable_instance", "attribute_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "component", "component_instance", "evse", "connector", "variable",
                        "variable_instance", "attribute_type"],
                name="unique_device_variable",
            )
        ]

    def __str__(self) -> str:
        return f"{self.station_id} {self.component}.{self.variable}"

    @property
    def writable(self) -> bool:
        return self.mutability != "ReadOnly"


class RemoteStartRequest(models.Model):
    """A RemoteStartTransaction waiting for the charger's StartTransaction (its pk is 2.0.1's remoteStartId).

    Links the transaction the charger then starts to whoever asked for it
    (an API key or a staff user, as ``stations.actors`` spells them) and to the
    mobile request's correlationId.
    """

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="+")
    connector_number = models.PositiveIntegerField(null=True, blank=True)
    id_tag = models.CharField(max_length=36)
    correlation_id = models.CharField(max_length=100, blank=True)
    actor = models.CharField(max_length=100, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    transaction = models.OneToOneField(
        Transaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="remote_start"
    )


class ServerProcess(models.Model):
    """A running server process, as the other processes see it.

    Each process refreshes its row every ``OCPP_PRESENCE_SWEEP_SECONDS``. A
    process killed outright (SIGKILL, a lost host) cannot mark its stations
    offline, so when its row has not been refreshed for
    ``OCPP_PROCESS_TIMEOUT`` seconds, the first live process to notice
    declares it dead and marks offline every station whose socket it held.
    A process that was only stalled and finds itself declared dead closes its
    chargers' sockets, so that they reconnect and register afresh.
    """

    # The channel-name prefix shared by every consumer of the process
    # ("specific.<layer client id>!"): a station's channel_name starts with it.
    channel_prefix = models.CharField(max_length=200, unique=True)
    server = models.CharField(max_length=100, help_text="host:pid")
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(help_text="Last time the process vouched for itself")
    chargers = models.PositiveIntegerField(default=0, help_text="Charger sockets it held at seen_at")
    dead_at = models.DateTimeField(null=True, blank=True, help_text="When another process declared it dead")

    class Meta:
        ordering = ["server"]
        verbose_name = "server process"
        verbose_name_plural = "server processes"

    def __str__(self) -> str:
        return self.server
