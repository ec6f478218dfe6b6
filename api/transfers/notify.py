"""Sending transfer and move alerts: each recipient's copy is queued and audited."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.forwarding import service as forwarding

# Transfers and move alerts are shared under the local authority's statutory safeguarding
# duties (Children Act 1989/2004) with the special-category condition for safeguarding.
PURPOSE = "child_protection"
LAWFUL_BASIS = "6(1)(e) + 9(2)(g) + schedule1-part2-para18"


def area_agencies(session: Session, area: str, kinds: Iterable[str]) -> list[str]:
    return list(session.exec(select(Agency.id).where(
        Agency.area == area, Agency.kind.in_(list(kinds)), Agency.disabled.is_(False))
        .order_by(Agency.id)).all())


def notify(session: Session, *, event_type: str, recipients: Iterable[str], data: dict,
           child_id: str, actor: str, areas: Iterable[str], rule: str) -> None:
    event = forwarding.new_event()
    for recipient in dict.fromkeys(recipients):
        if forwarding.enqueue(session, event=event, event_type=event_type,
                              recipient_id=recipient, data=data, areas=areas) is None:
            continue  # nothing was sent, so nothing was disclosed
        audit.record(session, actor=actor, action="alert.disclose", outcome=event_type,
                     child_id=child_id, recipient=recipient, purpose=PURPOSE,
                     lawful_basis=LAWFUL_BASIS, policy_rule=rule)
