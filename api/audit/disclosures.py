"""Every disclosure of one child's data, from the log, for subject access requests.

A disclosure is data leaving the service for someone: a delivery handed over (webhook or
feed), a flag read through the API by anyone but its publisher, a transfer or move alert, or
the child's record shown (the child view, a search result, a proposed match, a report).
Each is an audit event (so it can be checked against the chain); a handover also names the
flag version and the fields sent, from the disclosure decision it delivered.
"""

from __future__ import annotations

from sqlalchemy import or_
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.audit.read import COLUMNS, event_dict
from api.flags.models import Disclosure, Flag
from api.forwarding.models import Delivery

DISCLOSING_ACTIONS = ("delivery.handover", "flag.read", "alert.disclose", "child.read",
                      "child.break_glass", "child.search", "match.read", "report.read")


def page(session: Session, child_id: str, after: int | None, limit: int) -> list[dict]:
    """limit+1 disclosures after a seq, oldest first."""
    q = (select(*COLUMNS, Flag.category)
         .outerjoin(Flag, Flag.id == AuditEvent.flag_id)
         .where(AuditEvent.child_id == child_id, AuditEvent.action.in_(DISCLOSING_ACTIONS),
                # a publisher reading its own flag discloses nothing
                or_(AuditEvent.action != "flag.read", AuditEvent.actor_agency.is_(None),
                    AuditEvent.actor_agency != Flag.publisher_id)))
    if after is not None:
        q = q.where(AuditEvent.seq > after)
    rows = session.exec(q.order_by(AuditEvent.seq).limit(limit + 1)).all()
    delivery_ids = [r.reason for r in rows if r.action == "delivery.handover" and r.reason]
    sent = {delivery_id: (version, fields) for delivery_id, version, fields in session.exec(
        select(Delivery.id, Disclosure.flag_version, Disclosure.fields)
        .join(Disclosure, Disclosure.id == Delivery.disclosure_id)
        .where(Delivery.id.in_(delivery_ids)))} if delivery_ids else {}
    items = []
    for r in rows:
        version, fields = (sent.get(r.reason, (None, None)) if r.action == "delivery.handover"
                           else (None, None))
        items.append({**event_dict(r), "disclosed_to": r.recipient or r.actor_agency or r.actor,
                      "category": r.category, "flag_version": version, "fields": fields})
    return items
