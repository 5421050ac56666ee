"""The bad-input corpus of ../shared/RELIABILITY.md (appendix, path components), shared by
the key validator, artifact store and API tests."""

TRAVERSAL_KEYS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..\\..\\..\\windows\\win.ini",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "C:x",
    "a/../../../etc/passwd",
    "x;/../../../etc/passwd",
    "x#/../../../etc/passwd",
    "x?y=/../../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "foo%00.txt",
    "foo\x00.txt",
    "a//b",
    "./a",
    "a/.",
    ".loopml-tmp/x",
]
