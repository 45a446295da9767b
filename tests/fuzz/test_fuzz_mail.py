"""Property-based fuzzing of the email text pipeline: MIME, HTML, charsets — never a crash, always bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail import text as mailtext

FUZZ = settings(max_examples=800, deadline=None, derandomize=True)

html_bits = st.sampled_from(["<p>", "</p>", "<br>", "<div style='display:none'>", "</div>", "<script>x()</script>",
                             "<style>p{}</style>", "<a href='http://x.example'>", "</a>", "&amp;", "&#0;", "&#x110000;",
                             "<!--", "-->", "<table><tr><td>", "<![CDATA[", "<img src=x onerror=1>", "\x00"])
html_docs = st.lists(html_bits | st.text(max_size=30), max_size=40).map("".join)
headers = st.sampled_from(["Content-Type: text/plain; charset=utf-8", "Content-Type: text/html; charset=x-unknown",
                           'Content-Type: multipart/alternative; boundary="b"', "Content-Transfer-Encoding: base64",
                           "Content-Transfer-Encoding: quoted-printable", "MIME-Version: 1.0", "--b", "--b--",
                           "Content-Type: application/octet-stream; name=a.bin"])
mime_docs = st.lists(headers | st.text(max_size=40), max_size=25).map("\n".join)


@FUZZ
@given(doc=html_docs)
def test_fuzz_html_to_text(doc):
    """Any HTML (broken markup included) becomes text without raising; well-formed scripts are dropped."""
    out = mailtext.html_to_text(doc)
    assert isinstance(out, str)
    if "<!--" not in doc and "<![CDATA[" not in doc:
        assert "x()" not in out


@FUZZ
@given(subject=st.text(max_size=80), body=st.none() | st.text(max_size=2000), html=st.none() | html_docs,
       budget=st.integers(50, 600))
def test_fuzz_prepare_is_bounded_and_clean(subject, body, html, budget):
    """What reaches the model is bounded by the token budget and has no NUL bytes."""
    from bot.text.tokens import estimate_tokens

    prepared = mailtext.prepare(subject, body, html, budget_tokens=budget)
    assert "\x00" not in prepared.text
    assert estimate_tokens(prepared.text) <= budget + 16


@FUZZ
@given(doc=mime_docs)
def test_fuzz_mime_to_text(doc):
    """Any MIME-ish text is parsed to (text, notes) without raising."""
    out, notes = mailtext.mime_to_text(doc)
    assert isinstance(out, str) and isinstance(notes, list)


@FUZZ
@given(data=st.binary(max_size=300), charset=st.sampled_from([None, "utf-8", "latin-1", "x-unknown", "utf-16",
                                                              "shift_jis", "", "utf-8\x00"]))
def test_fuzz_decode_bytes(data, charset):
    """Bytes in any declared charset decode to text (unknown charsets fall back)."""
    text, _used = mailtext.decode_bytes(data, charset)
    assert isinstance(text, str)


@FUZZ
@given(body=st.text(max_size=3000), html=st.none() | html_docs)
def test_fuzz_strip_and_normalize(body, html):
    """Quote and signature stripping and normalising never grow the text or raise."""
    stripped, _ = mailtext.strip_quoted(body)
    signed, _ = mailtext.strip_signature(stripped)
    assert len(mailtext.normalize(signed)) <= len(body) + 1
