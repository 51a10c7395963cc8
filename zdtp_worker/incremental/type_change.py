"""Re-export: the type-change classifier lives in :mod:`zdtp_worker.pg.type_change`, shared by the
full copy (existing target columns), the plan-time target check and the CDC stream."""

from zdtp_worker.pg.type_change import ParsedType, Verdict, classify, parse

__all__ = ["ParsedType", "Verdict", "classify", "parse"]
