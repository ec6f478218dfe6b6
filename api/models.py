"""Imports every table model so SQLModel.metadata (and alembic) sees the whole schema."""

from api.agencies.models import Agency
from api.audit.models import AuditCheckpoint, AuditEvent
from api.auth.models import CredentialFailure, SigningKey, User
from api.forwarding.models import Delivery, Subscription
from api.flags.models import Disclosure, Flag, FlagVersion, SharingDecision
from api.identity.models import (
    IdentityMerge, LocalIdentifier, Person, PersonLink, PossibleMatch, Relationship,
)
from api.households.models import RiskAlert
from api.idempotency.models import IdempotencyRecord
from api.transfers.models import SuspectedMove, Transfer

__all__ = [
    "Agency", "AuditCheckpoint", "AuditEvent", "CredentialFailure", "Delivery", "Disclosure",
    "Flag", "FlagVersion", "IdempotencyRecord", "IdentityMerge", "LocalIdentifier", "Person",
    "PersonLink", "PossibleMatch", "Relationship", "RiskAlert", "SharingDecision", "SigningKey",
    "Subscription", "SuspectedMove", "Transfer", "User",
]
