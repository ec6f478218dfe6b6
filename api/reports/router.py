from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.agencies.service import check_area
from api.audit import service as audit
from api.auth.principal import Principal, require_roles
from api.deps import PolicyDep, SessionDep
from api.problems import ProblemError
from api.reports import service
from api.reports.schemas import DataQualityReport

router = APIRouter(prefix="/v1/reports", tags=["reports"])
Reader = Annotated[Principal, Depends(require_roles("mash_practitioner", "admin"))]


@router.get("/data-quality", response_model=DataQualityReport,
            summary="Per agency: flags missing NHS number or ethnicity, or with jargon; and "
                    "children known to many agencies but owned by none",
            responses={403: {"description": "A MASH practitioner of another area"},
                       422: {"description": "Unknown area"}})
def data_quality(session: SessionDep, policy: PolicyDep, principal: Reader,
                 area: Annotated[str, Query(max_length=9, description="ONS area code")]):
    check_area(session, policy, area)
    if principal.role == "mash_practitioner" and principal.area != area:
        raise ProblemError(403, "A MASH practitioner reads the data-quality report of their "
                                "own area only.")
    report = service.data_quality(session, area)
    # Listing children discloses who they are: each listed child's record shows the read.
    for child in report["known_to_many_owned_by_none"]:
        audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                     action="report.read", outcome="data_quality", child_id=child["child_id"],
                     purpose="data_quality")
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="report.read", outcome="data_quality", reason=f"area {area}")
    session.commit()
    return report
