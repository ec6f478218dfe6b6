import pytest
from collections import defaultdict
from itertools import combinations
from sqlmodel import select
from api.identity.models import PossibleMatch
from api.identity.schemas import Subject
from api.identity.service import resolve_child
from tests.population import generate

@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_seed(session, world, seed):
    pop = generate(seed=seed)
    rp = [(r.truth, resolve_child(session, r.agency, Subject(**r.subject)).id) for r in pop.records]
    t_of, p_of = defaultdict(set), defaultdict(set)
    for t, p in rp: t_of[p].add(t); p_of[t].add(p)
    wrong = sum(1 for ts in t_of.values() if len(ts) > 1)
    true = {frozenset(x) for ps in p_of.values() for x in combinations(sorted(ps), 2)}
    q = {frozenset((m.person_id, m.other_person_id)) for m in session.exec(select(PossibleMatch)).all()}
    print(f"SEED {seed} records {len(pop.records)} auto {len(rp)-len(t_of)} wrong {wrong} true {len(true)} queued {len(q)} recall {len(true & q)/len(true):.4f} qprec {len(true & q)/len(q):.4f}")
