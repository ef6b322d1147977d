"""``/docs``: the OpenAPI document rendered server-side as one self-contained HTML page (no CDN, no script).

Descriptions are Markdown (backticks, paragraphs, lists, links), rendered by markdown-it-py as CommonMark with raw
HTML turned off: HTML in a description is shown as text, and `javascript:`, `vbscript:`, `file:` and `data:` links
are not made (see docs/dependencies.md).
"""

from __future__ import annotations

import functools
import json
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

_METHODS = ("get", "post", "put", "patch", "delete")
_CONSTRAINTS = (
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minimum", "≥"),
    ("maximum", "≤"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("pattern", "pattern"),
    ("default", "default"),
)
_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
code,.path{font-family:ui-monospace,monospace}h2{margin-top:2.5rem;border-bottom:1px solid #ccd}
section.op{border:1px solid #dde;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.method{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.patch{color:#b60}.delete{color:#c22}.put{color:#85c}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{text-align:left;padding:.2rem .5rem;
border-bottom:1px solid #eef;vertical-align:top}th{font-weight:600}.muted{color:#667}
pre{background:#f6f8fa;border-radius:6px;padding:.5rem .75rem;overflow-x:auto;font-size:13px}
td p,td ul{margin:0}
"""


@functools.cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # CommonMark, no raw HTML (escaped as text); markdown-it's link validation refuses javascript:, data: and the
    # like. No linkify, no typographer: what the description says is what the page shows.
    return MarkdownIt("commonmark", {"html": False})


def markdown(text: str) -> str:
    """Markdown as HTML blocks (paragraphs, lists, links, `code`); any HTML in ``text`` is escaped."""
    html: str = _markdown().render(text)
    return html


def markdown_inline(text: str) -> str:
    """One line of Markdown as inline HTML, for headings and table cells; any HTML in ``text`` is escaped."""
    html: str = _markdown().renderInline(text)
    return html


def _example_html(title: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return f"<p>{escape(title)}</p><pre><code>{escape(text)}</code></pre>"


def _examples_html(title: str, content: dict[str, Any]) -> str:
    """The first example of each media type of ``content`` (the same one for a merge patch's two types)."""
    shown: list[str] = []
    for media in content.values():
        for item in media.get("examples", {}).values():
            html = _example_html(title, item["value"])
            if html not in shown:
                shown.append(html)
            break
    return "".join(shown)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _link(name: str) -> str:
    return f'<a href="#schema-{escape(name)}"><code>{escape(name)}</code></a>'


def type_html(schema: dict[str, Any]) -> str:
    """A JSON schema's type, briefly, with links to named schemas."""
    if "$ref" in schema:
        return _link(_ref_name(schema["$ref"]))
    if "anyOf" in schema:
        return " | ".join(type_html(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"<code>{escape(json.dumps(value))}</code>" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return "array of " + type_html(schema.get("items", {}))
    if kind is None:
        return "any"
    text = escape(str(kind))
    if "format" in schema:
        text += f" ({escape(schema['format'])})"
    return text


def _constraints(schema: dict[str, Any]) -> str:
    parts = [
        f"{label} <code>{escape(json.dumps(schema[name]))}</code>" for name, label in _CONSTRAINTS if name in schema
    ]
    return ", ".join(parts)


def _schema_section(name: str, schema: dict[str, Any]) -> str:
    out = [f'<section id="schema-{escape(name)}"><h3>{escape(name)}</h3>']
    if schema.get("description"):
        out.append(markdown(schema["description"]))
    properties = schema.get("properties")
    if properties:
        required = set(schema.get("required", ()))
        out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>constraints</th><th>about</th></tr>")
        for field, spec in properties.items():
            about = spec.get("description", "")
            out.append(
                f"<tr><td><code>{escape(field)}</code></td><td>{type_html(spec)}</td>"
                f"<td>{'yes' if field in required else ''}</td><td>{_constraints(spec)}</td>"
                f"<td>{markdown_inline(about)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append(f"<p>{type_html(schema)}</p>")
    out.append("</section>")
    return "".join(out)


def _operation_section(path: str, method: str, op: dict[str, Any]) -> str:
    out = [
        f'<section class="op" id="op-{escape(op["operationId"])}">',
        f'<h3><span class="method {method}">{method}</span> <span class="path">{escape(path)}</span></h3>',
        f"<p><strong>{markdown_inline(op['summary'])}</strong></p>",
    ]
    if op.get("description"):
        out.append(markdown(op["description"]))
    out.append("<p class=muted>Root key required.</p>" if op.get("security") else "<p class=muted>Open.</p>")
    if op.get("parameters"):
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>about</th></tr>")
        for param in op["parameters"]:
            out.append(
                f"<tr><td><code>{escape(param['name'])}</code></td><td>{escape(param['in'])}</td>"
                f"<td>{type_html(param['schema'])}</td><td>{'yes' if param.get('required') else ''}</td>"
                f"<td>{markdown_inline(param.get('description', ''))}</td></tr>"
            )
        out.append("</table>")
    if "requestBody" in op:
        content = op["requestBody"]["content"]
        media = ", ".join(f"<code>{escape(name)}</code>" for name in content)
        first = next(iter(content.values()))
        out.append(f"<p>Body ({media}): {type_html(first['schema'])}</p>")
        out.append(_examples_html("Example body:", content))
    out.append("<table><tr><th>status</th><th>answer</th><th>about</th></tr>")
    examples: list[str] = []
    for status, answer in op["responses"].items():
        content = answer.get("content", {})
        body = " ".join(f"<code>{escape(m)}</code> {type_html(c['schema'])}" for m, c in content.items())
        about = markdown_inline(answer["description"]) + _headers_html(answer.get("headers", {}))
        out.append(f"<tr><td>{escape(status)}</td><td>{body}</td><td>{about}</td></tr>")
        examples.append(_examples_html(f"Example answer ({status}):", content))
    out.append("</table>")
    out.extend(examples)
    out.append("</section>")
    return "".join(out)


def _headers_html(headers: dict[str, Any]) -> str:
    """The headers of an answer, as a list: name, whether it is always sent, an example, what it means."""
    items = []
    for name, header in headers.items():
        always = " (always)" if header.get("required") else ""
        example = f" e.g. <code>{escape(str(header['example']))}</code>" if "example" in header else ""
        about = markdown_inline(header.get("description", ""))
        items.append(f"<li><code>{escape(name)}</code>{always}{example}: {about}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""


def render(document: dict[str, Any]) -> str:
    """The HTML page of an OpenAPI document: every operation, its parameters and schemas."""
    info = document["info"]
    by_tag: dict[str, list[str]] = {tag["name"]: [] for tag in document.get("tags", [])}
    index: dict[str, list[str]] = {tag: [] for tag in by_tag}
    for path, item in document["paths"].items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                tag = op["tags"][0]
                by_tag.setdefault(tag, []).append(_operation_section(path, method, op))
                index.setdefault(tag, []).append(
                    f'<li><a href="#op-{escape(op["operationId"])}"><span class="method {method}">{method}</span> '
                    f'<span class="path">{escape(path)}</span></a></li>'
                )
    title = escape(f"{info['title']} API {info['version']}")
    out = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head><body>',
        f"<h1>{title}</h1>{markdown(info.get('description', ''))}",
        '<p>The machine-readable form is <a href="/openapi.json"><code>/openapi.json</code></a>.</p><nav>',
    ]
    for tag, items in index.items():
        out.append(f"<h4>{escape(tag)}</h4><ul>{''.join(items)}</ul>")
    out.append("</nav>")
    for tag, sections in by_tag.items():
        out.append(f"<h2>{escape(tag)}</h2>{''.join(sections)}")
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.append(_schema_section(name, schema))
    out.append("</body></html>")
    return "".join(out)
