"""A Hugging Face chat model's own template: its Jinja text, rendered as transformers renders it.

A Hub chat model carries its conversation layout as a Jinja template: the
``chat_template`` field of ``tokenizer_config.json``, or a ``chat_template.jinja``
file beside it (which transformers reads first). ``apply_chat_template`` renders it
to text, then encodes that text with every added token recognised and no BOS/EOS
added. This module does the same with tinylm's own code, so a tinylm chat with an
imported model sees the very ids transformers would give it:

* the environment is Jinja's *immutable sandbox* (a template from the Hub is
  untrusted code: it may not reach Python internals or mutate what it is given),
  with ``trim_blocks`` and ``lstrip_blocks`` (a block tag eats its own newline and
  the indentation before it) and the ``loopcontrols`` extension (``break``,
  ``continue``);
* the template sees ``messages`` (``role``/``content`` dicts),
  ``add_generation_prompt`` (true: the text ends where the assistant's reply
  begins), and the tokenizer's named special tokens from ``tokenizer_config.json``
  (``bos_token``, ``eos_token``, ``unk_token``, ``pad_token``, ...);
* the helpers transformers gives templates: ``raise_exception(msg)`` (a template's
  way to refuse a conversation), a ``tojson`` filter that keeps non-ASCII text as
  it is, ``strftime_now(fmt)``, and a ``{% generation %}`` block (only marks a
  reply for training masks, so here it just renders its body);
* the rendered text is encoded with special tokens allowed, as transformers'
  default does: a message that spells ``<|im_end|>`` becomes that token there too
  (for the char tokenizer ``tinylm export`` writes, ``<BOS>`` and its named
  special tokens likewise).

A reply ends at the tokenizer's ``eos_token`` (:attr:`HFChatTemplate.end_id`).
Jinja comes from the optional ``chat`` extra and is imported only when a
template is compiled, so tinylm itself never needs it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tinylm.chat.conversations import Message
from tinylm.chat.template import CHAT_TOKENS, jinja_chat_template
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.hf_tokenizer_json import CHAR_BOS, CHAR_UNK
from tinylm.untrusted_files import read_json

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
#: The named special tokens a template may use, as transformers hands them over.
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
#: The oldest Jinja whose sandbox has no known escape (transformers requires it too).
MIN_JINJA = (3, 1, 6)
INSTALL_HINT = "pip install 'tinylm[chat]'"


class HFChatTemplate:
    """Renders conversations with a Hugging Face Jinja chat template and one tokenizer."""

    def __init__(
        self,
        source: str,
        tokenizer: Tokenizer,
        special_tokens: dict[str, str],
        template: str,
    ) -> None:
        self.source = source
        self.tokenizer = tokenizer
        self.special_tokens = dict(special_tokens)
        self._compiled = compile_template(template, source)
        eos = self.special_tokens.get("eos_token")
        if eos is None or eos not in tokenizer.special_tokens:
            raise TinylmError(
                f"{source} names no eos_token the tokenizer has, so a reply could not end; "
                "give the folder's tokenizer_config.json its eos_token"
            )
        self.end_id = tokenizer.special_tokens[eos]

    def render_text(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The conversation as the template writes it (what transformers renders)."""
        import jinja2  # torch-free start-up: the optional chat extra, loaded with the template

        data = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return self._compiled.render(
                messages=data, add_generation_prompt=add_generation_prompt, **self.special_tokens
            )
        except jinja2.TemplateError as exc:  # raise_exception, or the sandbox said no
            raise TinylmError(
                f"the chat template of {self.source} refused the conversation: {exc}"
            ) from None

    def render_for_generation(self, messages: Sequence[Message]) -> list[int]:
        """The ids of the conversation so far, ending where the assistant's reply begins."""
        text = self.render_text(messages, add_generation_prompt=True)
        if isinstance(self.tokenizer, BPETokenizer):
            return self.tokenizer.encode(text, allowed_special="all")
        if isinstance(self.tokenizer, CharTokenizer):
            return _char_encode_with_specials(self.tokenizer, text)
        return self.tokenizer.encode(text)


def _char_encode_with_specials(tokenizer: CharTokenizer, text: str) -> list[int]:
    """``text`` in a char tokenizer's ids, its special tokens' names read as those tokens.

    The char tokenizer's own ``encode`` never does this (a name in a message is
    characters); a rendered template needs it, as transformers cuts its added
    tokens out of the text first, longest name first: ``<BOS>``, ``<UNK>`` and the
    named specials (a folder ``tinylm export`` wrote from a chat run).
    """
    specials = dict(tokenizer.special_tokens)
    specials[CHAR_BOS] = tokenizer.BOS
    if tokenizer.UNK is not None:
        specials[CHAR_UNK] = tokenizer.UNK
    names = sorted(specials, key=len, reverse=True)
    ids: list[int] = []
    for piece in re.split(f"({'|'.join(map(re.escape, names))})", text):
        ids += [specials[piece]] if piece in specials else tokenizer.encode(piece)
    return ids


def load_hf_chat_template(folder: str | os.PathLike, tokenizer: Tokenizer) -> HFChatTemplate | None:
    """The chat template of a Hugging Face folder, for ``tokenizer``; ``None`` when it has none.

    ``chat_template.jinja`` first, then ``tokenizer_config.json``'s ``chat_template``
    (a string, or a list of named templates of which ``default`` is used), as
    transformers reads them.
    """
    folder = Path(folder)
    template, specials = read_hf_chat_template(folder)
    if template is None:
        return None
    jinja_file = folder / TEMPLATE_FILE
    source = str(jinja_file if jinja_file.is_file() else folder / TOKENIZER_CONFIG)
    return HFChatTemplate(source, tokenizer, specials, template)


def read_hf_chat_template(folder: Path) -> tuple[str | None, dict[str, str]]:
    """``(the Jinja text or None, the named special tokens' text)`` of a folder; no Jinja needed.

    The text is found as :func:`load_hf_chat_template` finds it.
    """
    config_path = folder / TOKENIZER_CONFIG
    hint = "the Hugging Face folder is damaged; fetch it again"
    config = read_json(config_path, hint) if config_path.is_file() else {}
    if not isinstance(config, dict):
        raise TinylmError(f"{config_path} is not a JSON object; {hint}")
    template = _template_text(folder, config, str(config_path))
    return template, special_token_texts(config, str(config_path))


def is_tinylm_layout(template: str, specials: dict[str, str], tokenizer: Tokenizer) -> bool:
    """Whether ``template`` renders tinylm's own chat layout for ``tokenizer``.

    True for the very text :func:`tinylm.chat.template.jinja_chat_template` writes
    (what ``tinylm export`` puts in a chat model's folder), when the tokenizer has
    the chat tokens and the folder's ``bos_token`` is the tokenizer's BOS: then
    :class:`~tinylm.chat.template.ChatTemplate` gives the ids this template gives.
    Any other text is some other layout, even one that happens to render alike.
    """
    if not all(name in tokenizer.special_tokens for name in CHAT_TOKENS):
        return False
    bos = tokenizer.bos_id
    if template != jinja_chat_template(bos is not None):
        return False
    if bos is None:
        return True
    names = {i: name for name, i in tokenizer.special_tokens.items()}
    if isinstance(tokenizer, CharTokenizer):
        names[tokenizer.BOS] = CHAR_BOS
    return specials.get("bos_token") == names.get(bos)


def _template_text(folder: Path, config: dict[str, Any], source: str) -> str | None:
    jinja_file = folder / TEMPLATE_FILE
    if jinja_file.is_file():
        try:
            return jinja_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TinylmError(f"cannot read {jinja_file}: {exc}; fetch the folder again") from None
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {item.get("name"): item.get("template") for item in value if isinstance(item, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
    raise TinylmError(
        f"{source}: chat_template is neither a template nor a list naming a 'default' one; "
        "fix the file or fetch the folder again"
    )


def special_token_texts(config: dict[str, Any], source: str) -> dict[str, str]:
    """``bos_token``, ``eos_token``, ... as text: a string, or an added token's ``content``."""
    found = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if value is None:
            continue
        if not isinstance(value, str):
            raise TinylmError(f"{source}: {name} is not a token's text; fix the file")
        found[name] = value
    return found


# -- the Jinja environment ---------------------------------------------------------------


def compile_template(template: str, source: str) -> Any:
    """``template`` compiled in the sandbox described in the module docstring."""
    jinja2 = _import_jinja()
    from jinja2 import ext, nodes  # torch-free start-up: the optional chat extra
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(ext.Extension):
        """``{% generation %}...{% endgeneration %}``: a training mark, rendered plain."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TinylmError(
            f"the chat template of {source} does not parse (line {exc.lineno}: {exc.message}); "
            "fix it or fetch the folder again"
        ) from None


def _import_jinja() -> Any:
    try:
        import jinja2  # torch-free start-up: the optional chat extra
    except ImportError:
        raise TinylmError(
            f"rendering a Hugging Face chat template needs Jinja; install it with {INSTALL_HINT}"
        ) from None
    version = tuple(int(part) for part in jinja2.__version__.split(".")[:3] if part.isdigit())
    if version < MIN_JINJA:
        raise TinylmError(
            f"Jinja {jinja2.__version__} has known sandbox escapes and chat templates are "
            f"untrusted; upgrade it with {INSTALL_HINT}"
        )
    return jinja2


def _raise_exception(message: str) -> None:
    import jinja2  # torch-free start-up: the optional chat extra

    raise jinja2.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """JSON as transformers' templates expect it: no HTML escaping, non-ASCII kept."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)
