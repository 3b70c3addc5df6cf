#!/usr/bin/env python3
"""Checks that firestore.indexes.json serves every Firestore query in src/, and that the TTL
policies it declares (which terraform/firestore.tf deploys from the same file) are those
docs/signalling.md names.

The queries are read from the Rust sources: every `.select()` chain with `.from(...)`, whether
it spans collections (`.all_descendants()`: a collection-group query) or one parent's
collection (`.parent(...)`), and its filters (`q.field("f").eq/is_in/is_not_in`). Firestore
maintains single-field indexes for collection-scoped queries by itself; collection-group
queries need single-field indexes with COLLECTION_GROUP scope (field overrides), and queries on
several fields need a composite index. A field override replaces the automatic indexes of its
field, so one on a field that a collection-scoped query filters must keep COLLECTION scope.

EXPECTED lists the queries known when this check was written: if the extraction ever finds
fewer, the extractor is broken; if it finds more, they are checked like the others.
Exit status 0 when everything is covered.
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

# (scope, collection group, frozenset of (field, operator)) known from the code review.
EXPECTED = {
    ("group", "sessions", frozenset({("state", "==")})),
    ("group", "sessions", frozenset({("instance", "==")})),
    ("group", "sessions", frozenset({("state", "not-in")})),
    ("group", "sessions", frozenset({("state", "=="), ("instance", "==")})),
    ("group", "sessions", frozenset({("instance", "=="), ("state", "in")})),
    ("group", "participants", frozenset({("instance", "==")})),
    ("group", "sessions", frozenset({("uid", "==")})),
    ("group", "messages", frozenset({("uid", "==")})),
    ("group", "participants", frozenset({("uid", "==")})),
    ("group", "members", frozenset({("uid", "==")})),
    ("collection", "rooms", frozenset({("assignment.instance", "==")})),
    ("collection", "sessions", frozenset({("state", "in")})),
    ("collection", "participants", frozenset({("uid", "==")})),
}
TTL_EXPECTED_FIELD = "expiresAt"
OPS = {"eq": "==", "is_in": "in", "is_not_in": "not-in", "neq": "!=", "less_than": "<",
       "less_than_or_equal": "<=", "greater_than": ">", "greater_than_or_equal": ">=",
       "array_contains": "array-contains", "array_contains_any": "array-contains-any"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def constants():
    """`const NAME: &str = "value";` anywhere in src/."""
    found = {}
    for path in (ROOT / "src").rglob("*.rs"):
        for name, value in re.findall(r'const\s+([A-Z_]+)\s*:\s*&str\s*=\s*"([^"]*)"', path.read_text()):
            found.setdefault(name, value)
    return found


def statement_end(text, start):
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return i
        elif c == ";" and depth == 0:
            return i
    return len(text)


def queries_in(path, consts):
    text = strip_comments(path.read_text())
    if "#[cfg(test)]" in text:
        text = text.split("#[cfg(test)]")[0]
    # Inline closures that start a query: `let sessions = || self.db...all_descendants();`
    for name, body in re.findall(r"let\s+(\w+)\s*=\s*\|\|\s*([^;]*\.select\(\)[^;]*);", text):
        text = re.sub(r"\b%s\(\)" % re.escape(name), body, text)
        text = text.replace("let %s = || %s;" % (name, body), "")
    found = []
    for m in re.finditer(r"\.select\(\)", text):
        chain = text[m.start():statement_end(text, m.end())]
        if ".by_id_in(" in chain:
            continue  # a document get
        src = re.search(r"\.from\(\s*([\w:]+)\s*\)", chain)
        if not src:
            continue
        arg = src.group(1).split("::")[-1]
        if arg in consts:
            collections = [consts[arg]]
        else:
            loop = None
            for lm in re.finditer(r"for\s+%s\s+in\s+\[([^\]]*)\]" % re.escape(arg), text[:m.start()]):
                loop = lm
            if not loop:
                raise SystemExit(f"{path}: cannot resolve collection {arg!r} in a query")
            collections = [consts[c.strip().split("::")[-1]] for c in loop.group(1).split(",") if c.strip()]
        scope = "group" if ".all_descendants()" in chain else "collection"
        filters = frozenset(
            (field, OPS.get(op, op))
            for field, op in re.findall(r'q\.field\(\s*"([^"]+)"\s*\)\s*\.(\w+)\(', chain)
        )
        line = text[:m.start()].count("\n") + 1
        for c in collections:
            found.append((scope, c, filters, f"{path.relative_to(ROOT)}:~{line}"))
    return found


def main():
    consts = constants()
    queries = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        queries.extend(queries_in(path, consts))
    config = json.loads((ROOT / "firestore.indexes.json").read_text())
    overrides = {(f["collectionGroup"], f["fieldPath"]): f for f in config.get("fieldOverrides", [])}
    composites = config.get("indexes", [])
    problems = []

    def has_override(cg, field, scope, order="ASCENDING"):
        o = overrides.get((cg, field))
        return o is not None and any(
            ix.get("queryScope", "COLLECTION") == scope and ix.get("order") == order
            for ix in o.get("indexes", [])
        )

    print("queries found in src/ and what serves them:")
    seen = set()
    for scope, cg, filters, where in queries:
        key = (scope, cg, filters)
        if key in seen:
            continue
        seen.add(key)
        fields = sorted({f for f, _ in filters})
        desc = " AND ".join(f"{f} {op}" for f, op in sorted(filters)) or "(no filter)"
        if not filters:
            served = "no index needed (no filter)"
        elif scope == "collection":
            if len(fields) > 1:
                ok = any(ix["collectionGroup"] == cg and ix["queryScope"] == "COLLECTION"
                         and sorted(f["fieldPath"] for f in ix["fields"]) == fields for ix in composites)
                served = "composite (collection)" if ok else None
            else:
                o = overrides.get((cg, fields[0]))
                if o is None:
                    served = "automatic single-field index (collection scope)"
                elif has_override(cg, fields[0], "COLLECTION"):
                    served = "field override keeps the collection-scope index"
                else:
                    served = None
                    problems.append(f"{where}: the override of {cg}.{fields[0]} drops the collection-scope index this query needs")
        else:
            if len(fields) == 1:
                served = "single-field collection-group index" if has_override(cg, fields[0], "COLLECTION_GROUP") else None
            else:
                ok = any(ix["collectionGroup"] == cg and ix["queryScope"] == "COLLECTION_GROUP"
                         and sorted(f["fieldPath"] for f in ix["fields"]) == fields for ix in composites)
                served = "composite collection-group index" if ok else None
        if served is None and not any(p.startswith(where) for p in problems):
            problems.append(f"{where}: {scope} query on {cg} where {desc} has no index in firestore.indexes.json")
        print(f"  {'collection-group' if scope == 'group' else 'collection      '} {cg:<13} {desc:<36} {served or 'MISSING'}  ({where})")

    missing_known = EXPECTED - seen
    for scope, cg, filters in sorted(missing_known, key=str):
        problems.append(f"the extractor no longer finds the known query {scope} {cg} {sorted(filters)}: fix it")

    # TTL: the JSON (deployed by terraform and the Firebase CLI) against docs/signalling.md.
    ttl = sorted(f["collectionGroup"] for f in config.get("fieldOverrides", []) if f.get("ttl"))
    ttl_fields = {f["fieldPath"] for f in config.get("fieldOverrides", []) if f.get("ttl")}
    doc = (ROOT / "docs/signalling.md").read_text()
    section = doc.split("## Cleanup (TTL)", 1)[1].split("\n## ", 1)[0]
    sentence = re.search(r"TTL on the\s+`(\w+)`\s+field of the(.*?)collection groups", section, re.S)
    if not sentence:
        problems.append("docs/signalling.md: no 'TTL on the `field` field of the ... collection groups' sentence")
    else:
        doc_ttl = sorted(re.findall(r"`(\w+)`", sentence.group(2)))
        print(f"TTL on {sentence.group(1)}: firestore.indexes.json {ttl}, docs/signalling.md {doc_ttl}")
        if doc_ttl != ttl or ttl_fields != {sentence.group(1)} or sentence.group(1) != TTL_EXPECTED_FIELD:
            problems.append(f"TTL policies differ: firestore.indexes.json {ttl} on {sorted(ttl_fields)}, docs {doc_ttl} on {sentence.group(1)}")
    for f in config.get("fieldOverrides", []):
        if f.get("ttl") and f.get("indexes") != []:
            problems.append(f"{f['collectionGroup']}.{f['fieldPath']}: a TTL field should be exempt from indexing (indexes: [])")
    tf = (ROOT / "terraform/firestore.tf").read_text()
    if "firestore.indexes.json" not in tf or "ttl_config" not in tf:
        problems.append("terraform/firestore.tf no longer deploys firestore.indexes.json (indexes, overrides, TTL)")

    for p in problems:
        print("FAIL:", p)
    print(f"indexes: {len(seen)} distinct queries, {len(composites)} composite indexes, "
          f"{len(overrides)} field overrides, TTL on {len(ttl)} collection groups: "
          + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
