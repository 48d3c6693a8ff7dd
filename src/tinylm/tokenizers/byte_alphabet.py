"""GPT-2's bytes-to-unicode alphabet: how byte-level vocabularies spell bytes as text.

GPT-2's ``encoder.json`` / ``vocab.bpe``, Hugging Face's ``ByteLevel``
pre-tokenizer and decoder, and GGUF's ``gpt2`` tokenizer all store byte tokens as
text in this one spelling, so readers and writers of all three share it.
"""

from __future__ import annotations


def gpt2_byte_alphabet() -> list[str]:
    """GPT-2's bytes-to-unicode table: the printable character that spells each byte.

    GPT-2's files store tokens as text, so every byte needs a visible character:
    bytes that are printable Latin-1 (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves, and the other 68 take code points 256, 257, ... in byte
    order (so a space, byte 32, is ``Ġ`` = U+0120).
    """
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    alphabet = []
    extra = 0
    for byte in range(256):
        if byte in printable:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(256 + extra))
            extra += 1
    return alphabet
