"""Plain-language checks on flag summaries: meaning, not just data."""

from __future__ import annotations

import re

from api.policy.schema import PlainLanguage


def summary_warnings(summary: str, rules: PlainLanguage) -> list[dict[str, str]]:
    """Warnings when a summary leans on acronyms or gives generic reassurance."""
    warnings: list[dict[str, str]] = []
    lowered = summary.lower()
    for term in rules.jargon:
        if re.search(rf"(?<![\w]){re.escape(term.term.lower())}(?![\w])", lowered):
            warnings.append(
                {
                    "code": "jargon",
                    "term": term.term,
                    "message": f"'{term.term}' may not be understood by other agencies: "
                    f"{term.say_instead}",
                }
            )
    for phrase in rules.generic_reassurance:
        if re.search(rf"(?<![\w]){re.escape(phrase.lower())}(?![\w])", lowered):
            warnings.append(
                {
                    "code": "generic_reassurance",
                    "term": phrase,
                    "message": f"'{phrase}' gives reassurance without saying what happened; "
                    "say what was seen and what it means for the child",
                }
            )
    if len(summary.split()) < rules.min_summary_words:
        warnings.append(
            {
                "code": "too_short",
                "term": "",
                "message": f"a summary of fewer than {rules.min_summary_words} words rarely says "
                "what happened and what it means for the child",
            }
        )
    return warnings
