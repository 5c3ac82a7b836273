"""The CSR account page as a browser shows it, for tests that read its sections with the Django test client.

The page's first response leaves its lazy sections (billing_mgmt.sections, ``lazy=``) as cards with a
"Show …" link; htmx then loads each lazy part (/accounts/<number>/parts/<part>/) and swaps its sections into
their cards. ``whole_page`` does the same: the first response, then each part, each section's html put into
its card, so a test can read the page as the CSR sees it.
"""

from __future__ import annotations

import re

HTMX = {"HTTP_HX_REQUEST": "true"}

_PART_LOADER = re.compile(r'<div hidden data-part="([\w-]+)" hx-get="([^"]+)"')
_PART_ITEM = re.compile(
    r'<div id="section-([\w-]+)-body" hx-swap-oob="innerHTML" data-part-section="[\w-]+">'
)
_PLACEHOLDER = re.compile(r'<p class="section-loading card__body">.*?</p>', re.S)


def part_sections(html: str) -> dict[str, str]:
    """A part's response: each section's html by key."""
    found = {}
    starts = list(_PART_ITEM.finditer(html))
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(html)
        chunk = html[match.end() : end]
        found[match.group(1)] = chunk[: chunk.rindex("</div>")]
    return found


def fill_parts(client, body: str) -> str:
    """Load the page's lazy parts (as htmx does) and put each section into its card."""
    for _part, url in _PART_LOADER.findall(body):
        response = client.get(url, **HTMX)
        assert response.status_code == 200, (url, response.status_code)
        for key, html in part_sections(response.content.decode()).items():
            marker = f'id="section-{key}-body"'
            at = body.index(marker)
            placeholder = _PLACEHOLDER.search(body, at)
            assert placeholder is not None, key
            body = body[: placeholder.start()] + html + body[placeholder.end() :]
    return body


def whole_page(client, url: str) -> str:
    """The page at ``url`` (200) with its lazy parts loaded."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return fill_parts(client, response.content.decode())
