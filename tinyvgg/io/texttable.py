"""Plain-text tables for what the commands print."""
from __future__ import annotations


def format_table(header, lines, total=None, text_columns: int = 1) -> list[str]:
    """The lines of a table: the header, a rule, one line per row, and, when ``total``
    is given, a rule and the total row. The first ``text_columns`` columns are
    left-aligned (names), the others right-aligned (numbers); cells are ``str()``-ed."""
    rows = [[str(cell) for cell in row] for row in [header, *lines] + ([total] if total else [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def fmt(row):
        return "  ".join(cell.ljust(w) if i < text_columns else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    text = [fmt(row) for row in rows]
    rule = "-" * len(text[0])
    if total is None:
        return [text[0], rule] + text[1:]
    return [text[0], rule] + text[1:-1] + [rule, text[-1]]
