from pydantic import BaseModel, Field


class AuditEventOut(BaseModel):
    """One event of the sharing log: metadata only, never flag content."""

    seq: int
    at: str = Field(description="UTC with microseconds and Z: exactly the form that is hashed")
    actor: str
    actor_agency: str | None
    action: str
    child_id: str | None
    flag_id: str | None
    recipient: str | None
    purpose: str | None
    reason: str | None
    lawful_basis: str | None
    policy_rule: str | None
    policy_version: str | None
    outcome: str
    prev_hash: str
    hash: str


class DisclosureOut(AuditEventOut):
    disclosed_to: str = Field(description="Recipient agency, or the reader's agency or name")
    category: str | None = Field(description="The flag's category, when a flag was disclosed")
    flag_version: int | None = Field(description="For a handover: the version sent")
    fields: list[str] | None = Field(
        description="For a handover: the flag fields sent under the policy rule. Null for a "
                    "read: the reader saw what its role may see, for the stated purpose")


class CheckpointOut(BaseModel):
    seq: int
    hash: str
    at: str
    kid: str = Field(description="Signing key, in /.well-known/jwks.json")
    signature: str = Field(description='RS256 JWS (compact) over {"iss","seq","hash","at"}')


class FindingOut(BaseModel):
    seq: int | None
    problem: str


class VerifyOut(BaseModel):
    ok: bool
    events_checked: int
    head: str = Field(description="Hash of the last event (64 zeros for an empty log)")
    head_seq: int
    first_bad_seq: int | None
    problems: list[FindingOut] = Field(description="What failed, first 100")
    checkpoints_checked: int
    signatures_checked: int
    latest_checkpoint: CheckpointOut | None
    head_matches_checkpoint: bool | None = Field(
        description="The chain passes intact through the latest signed checkpoint")
