"""The domain never depends on the adapters: ``pki/`` imports nothing from ``web`` or DRF."""

from __future__ import annotations

import ast
from pathlib import Path

PKI = Path(__file__).resolve().parents[1] / "pki"
FORBIDDEN = ("web", "rest_framework")


def forbidden_imports(source: str, filename: str = "<src>") -> list[str]:
    """Return ``line: module`` for every import of a forbidden package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
            "import_string",
        }:
            modules = [
                a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in FORBIDDEN:
                found.append(f"{node.lineno}: {module}")
    return found


def test_pki_imports_nothing_from_web_or_rest_framework():
    modules = sorted(PKI.rglob("*.py"))
    assert len(modules) > 30  # the scan really walks the package
    violations = {
        str(path.relative_to(PKI.parent)): hits
        for path in modules
        if (hits := forbidden_imports(path.read_text(encoding="utf-8"), str(path)))
    }
    assert violations == {}


def test_the_scan_catches_every_form_of_import():
    source = "\n".join(
        [
            "import web",
            "import os, web.api.views as views",
            "from rest_framework import serializers",
            "from web.settings import KMI",
            "def f():",
            "    import rest_framework.exceptions",
            "    return importlib.import_module('web.ui')",
            "from webauthn import x  # a different package",
            "from .web import y  # pki's own submodule",
        ]
    )
    assert forbidden_imports(source) == [
        "1: web",
        "2: web.api.views",
        "3: rest_framework",
        "4: web.settings",
        "6: rest_framework.exceptions",
        "7: web.ui",
    ]


# --- no import cycles between pki modules ------------------------------------------------------

# Edges left out of the cycle contract, each with the cycle it closes and who removes it.
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKI.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Import nodes under ``if TYPE_CHECKING:`` (never run, so no cycle at run time)."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def imported_modules(source: str, name: str, *, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, at module level or inside functions."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            hit = target
            while hit and hit not in known:
                hit = hit.rpartition(".")[0]
            if hit and hit != name:
                found.add(hit)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def pki_import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PKI.rglob("*.py") if "migrations" not in p.parts}
    known = set(paths)
    return {
        name: imported_modules(
            path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py", known=known
        )
        for name, path in paths.items()
    }


def test_no_import_cycles_between_pki_modules():
    graph = pki_import_graph()
    assert len(graph) > 60
    assert "pki.signing" in graph["pki.enrollment"]  # the scan sees the real imports
    for a, b in KNOWN_CYCLE_EDGES:
        assert b in graph[a], f"{a} no longer imports {b}: remove it from KNOWN_CYCLE_EDGES"
        graph[a].discard(b)
    assert import_cycles(graph) == []


def test_the_cycle_scan_counts_function_level_and_relative_imports_but_not_type_checking_ones():
    known = {"pki.a", "pki.b", "pki.c", "pki.pkg", "pki.pkg.d"}
    source = "\n".join(
        [
            "from typing import TYPE_CHECKING",
            "from pki import a",
            "if TYPE_CHECKING:",
            "    from pki.c import Thing",
            "def f():",
            "    from .pkg.d import g",
            "    import pki.b.sub",
        ]
    )
    assert imported_modules(source, "pki.x", is_package=False, known=known) == {"pki.a", "pki.b", "pki.pkg.d"}
    graph = {"pki.a": {"pki.b"}, "pki.b": {"pki.c"}, "pki.c": {"pki.a"}, "pki.d": {"pki.a"}}
    assert import_cycles(graph) == [["pki.a", "pki.b", "pki.c"]]


# --- one vocabulary for RFC facts ---------------------------------------------------------------

ROOT = PKI.parent
REASON_NAMES = {
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
}
REASON_MEMBERS = {
    "UNSPECIFIED",
    "KEY_COMPROMISE",
    "CA_COMPROMISE",
    "AFFILIATION_CHANGED",
    "SUPERSEDED",
    "CESSATION_OF_OPERATION",
    "CERTIFICATE_HOLD",
    "REMOVE_FROM_CRL",
    "PRIVILEGE_WITHDRAWN",
    "AA_COMPROMISE",
}


def _sources() -> dict[str, ast.AST]:
    paths = [*PKI.rglob("*.py"), *(ROOT / "web").rglob("*.py")]
    return {
        str(p.relative_to(ROOT)): ast.parse(p.read_text(encoding="utf-8"))
        for p in sorted(paths)
        if "migrations" not in p.parts
    }


def _is_reason(node: ast.AST | None) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in REASON_NAMES
    return isinstance(node, ast.Attribute) and node.attr in REASON_MEMBERS


def _is_int(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _where(predicate) -> list[str]:
    return sorted(name for name, tree in _sources().items() if any(predicate(n) for n in ast.walk(tree)))


def test_rfc5280_reason_codes_are_one_table_on_revocation_reason():
    def reason_code_table(node: ast.AST) -> bool:
        if not isinstance(node, ast.Dict):
            return False
        pairs = list(zip(node.keys, node.values, strict=True))
        matches = sum((_is_reason(k) and _is_int(v)) or (_is_int(k) and _is_reason(v)) for k, v in pairs)
        return matches >= 3

    assert _where(reason_code_table) == ["pki/models/certificate.py"]
    from pki.models import RevocationReason

    assert [r.code for r in RevocationReason] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert all(RevocationReason.from_code(r.code) is r for r in RevocationReason)


def _string_constants_containing(*needles: str):
    def predicate(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.hex()
            return any(n in text for n in needles)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "fromhex" and node.args:
            first = node.args[0]
            return isinstance(first, ast.Constant) and any(n in str(first.value) for n in needles)
        return False

    return predicate


def test_the_acme_error_namespace_is_written_once():
    assert _where(_string_constants_containing("urn:ietf:params:acme:error:")) == ["pki/acme/exceptions.py"]


def test_signature_algorithm_identifiers_are_written_once():
    # ecdsa-with-SHA2 (RFC 5758) and sha*WithRSAEncryption (RFC 4055), dotted or DER-encoded.
    needles = ("1.2.840.10045.4.3.", "1.2.840.113549.1.1.1", "2a8648ce3d0403", "2a864886f70d01010")
    assert _where(_string_constants_containing(*needles)) == ["pki/x509/der.py"]


def test_one_der_encoder_for_crl_and_ocsp():
    def encoder(node: ast.AST) -> bool:
        if isinstance(node, ast.FunctionDef):
            return node.name in {"tlv", "encode_oid", "length"}
        if isinstance(node, ast.Assign):
            return any(isinstance(t, ast.Name) and t.id in {"SEQUENCE", "TAG_SEQUENCE"} for t in node.targets)
        return False

    assert _where(encoder) == ["pki/x509/der.py"]


def test_validity_windows_are_computed_once():
    def window(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "backdate_seconds"

    assert _where(window) == ["pki/authorities.py"]


def test_certificate_sans_are_read_in_one_place():
    def san_read(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "get_extension_for_class"
            and any(getattr(a, "attr", "") == "SubjectAlternativeName" for a in node.args)
        )

    assert _where(san_read) == [
        "pki/acme/validation.py",  # tls-alpn-01: the peer's certificate, compared as raw GeneralNames
        "pki/x509/csr.py",  # a CSR's requested SANs, checked while it is parsed
        "pki/x509/describe.py",  # display of any GeneralName, supported or not
        "pki/x509/names.py",  # certificate_sans: every certificate KMI reads
    ]


def test_domain_errors_are_defined_in_the_exceptions_modules():
    import importlib
    import pkgutil

    import pki
    from pki.exceptions import PKIError

    for info in pkgutil.walk_packages(pki.__path__, "pki."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
    seen, todo = set(), [PKIError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(c for c in cls.__subclasses__() if c not in seen)
    defined_in = {c.__module__ for c in seen if c.__module__.split(".")[0] == "pki"}  # not tests' own
    assert defined_in == {"pki.exceptions", "pki.acme.exceptions"}


# --- one path per job -----------------------------------------------------------------------------


def _builds_row(model: str):
    """Calls that make a row of ``model``: ``Model(...)`` or ``Model.objects.create/bulk_create/…``."""

    def predicate(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if isinstance(func, ast.Name):
            return func.id == model
        return (
            isinstance(func, ast.Attribute)
            and func.attr in {"create", "bulk_create", "get_or_create", "update_or_create"}
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "objects"
            and model in {getattr(func.value.value, "id", None), getattr(func.value.value, "attr", None)}
        )

    return predicate


def test_certificate_rows_are_built_in_one_place():
    assert _where(_builds_row("Certificate")) == ["pki/recording.py"]  # certificate_row


def test_request_rows_are_built_in_one_place():
    assert _where(_builds_row("CertificateRequest")) == ["pki/issuance.py"]  # new_request


def test_the_row_scan_sees_constructors_and_manager_creates():
    found = _builds_row("Certificate")
    assert found(ast.parse("Certificate(ca=ca)").body[0].value)
    assert found(ast.parse("Certificate.objects.create(ca=ca)").body[0].value)
    assert found(ast.parse("models.Certificate.objects.bulk_create(rows)").body[0].value)
    assert not found(ast.parse("x509.Certificate(der)").body[0].value)
    assert not found(ast.parse("CertificateAuthority.objects.create()").body[0].value)


# The steps of an issuance; every caller outside pki/issuance.py goes through a use case of
# pki/enrollment.py (enroll, approve_and_issue, sign_csr) instead of assembling them; the
# protocol adapters listed below join one of the steps to their own one-time secret.
ISSUANCE_STEPS = {"submit_request", "approve_request", "issue_certificate", "submit_and_issue"}


def _imports_an_issuance_step(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.ImportFrom)
        and node.module == "pki.issuance"
        and any(alias.name in ISSUANCE_STEPS for alias in node.names)
    )


def test_only_the_use_cases_assemble_the_issuance_steps():
    assert _where(_imports_an_issuance_step) == [
        "pki/acme/finalize.py",  # submit_and_issue: ACME decides where it signs (processing orders)
        "pki/enrollment.py",  # enroll, approve_and_issue, sign_csr
        "pki/est/enrollment.py",  # submit_and_issue with the one-time code's claim in its statement
        "pki/scep/service.py",  # submit_request with the challenge used in the same transaction
        "pki/signing_use_cases.py",  # issue_request on a signing worker
    ]
    commands = sorted((PKI / "management" / "commands").glob("*.py"))
    assert len(commands) > 30
    assert not [
        c.name for c in commands if any(map(_imports_an_issuance_step, ast.walk(ast.parse(c.read_text()))))
    ]


def test_lifecycle_settings_live_in_pki_conf():
    assert not (PKI / "lifecycle_conf.py").exists()

    def old_module(node: ast.AST) -> bool:
        if isinstance(node, ast.ImportFrom):
            return node.module == "pki.lifecycle_conf" or (
                node.module == "pki" and any(a.name == "lifecycle_conf" for a in node.names)
            )
        return isinstance(node, ast.Import) and any(a.name == "pki.lifecycle_conf" for a in node.names)

    assert _where(old_module) == []
    from pki.conf import lifecycle_settings

    assert lifecycle_settings().signing in {"inprocess", "worker"}
