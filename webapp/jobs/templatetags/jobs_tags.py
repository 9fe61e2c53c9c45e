from __future__ import annotations

from django import template

from webapp.jobs.selectors import pair_list_for_run

register = template.Library()


@register.inclusion_tag("jobs/_pairs_preview.html")
def run_pairs_preview(run, limit: int = 8) -> dict:
    pairs = pair_list_for_run(run=run)
    return {"pairs": list(pairs[:limit]), "pair_count": pairs.count()}
