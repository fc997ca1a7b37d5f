"""The Qwen3-VL-style chat template of the tiny model.

Rendering of ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}]``
with ``add_generation_prompt=True``::

    <|im_start|>user
    <|vision_start|><|image_pad|><|vision_end|>Q<|im_end|>
    <|im_start|>assistant

Choices, compared with the released Qwen3-VL templates:

- Turns are ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, content parts in order; an image part
  (``{"type": "image", ...}``, any payload key) becomes ``<|vision_start|><|image_pad|><|vision_end|>``,
  which the processor then expands to one ``<|image_pad|>`` per merged patch.
- Assistant content is rendered verbatim, ``<think>…</think>`` included: the Thinking variant of
  Qwen3-VL prefills ``<think>\\n`` after the generation prompt and moves reasoning out of earlier
  turns, but roma's prompts ask the model to write ``<think>…</think>`` itself, and format rewards
  (TRL's ``think_format_reward``) check that the completion starts with ``<think>``.
- The assistant content and its ``<|im_end|>`` sit inside ``{% generation %}`` markers, so TRL's
  ``assistant_only_loss`` works and trains the end-of-turn token.
- Roles other than system / user / assistant, a system message that is not first, and content
  parts other than text / image (video, audio, tool calls) raise instead of being dropped.
- Newlines are written as ``{{- '...\\n' }}``: ``-%}`` whitespace stripping would eat literal ones.
"""

from __future__ import annotations

__all__ = ["CHAT_TEMPLATE", "IMAGE_PLACEHOLDER"]

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

CHAT_TEMPLATE = (
    "{%- for message in messages %}\n"
    "    {%- if message.role not in ['system', 'user', 'assistant'] %}\n"
    "        {{- raise_exception('unsupported role ' ~ message.role"
    " ~ '; the template knows system, user and assistant') }}\n"
    "    {%- endif %}\n"
    "    {%- if message.role == 'system' and not loop.first %}\n"
    "        {{- raise_exception('a system message must be the first message') }}\n"
    "    {%- endif %}\n"
    "    {%- set ns = namespace(text='') %}\n"
    "    {%- if message.content is string %}\n"
    "        {%- set ns.text = message.content %}\n"
    "    {%- else %}\n"
    "        {%- for part in message.content %}\n"
    "            {%- if part.type == 'image' %}\n"
    f"                {{%- set ns.text = ns.text ~ '{IMAGE_PLACEHOLDER}' %}}\n"
    "            {%- elif part.type == 'text' %}\n"
    "                {%- set ns.text = ns.text ~ part.text %}\n"
    "            {%- else %}\n"
    "                {{- raise_exception('unsupported content part type ' ~ part.type"
    " ~ '; the template knows text and image') }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- endif %}\n"
    "    {%- if message.role == 'assistant' %}\n"
    "        {{- '<|im_start|>assistant\\n' }}\n"
    "        {%- generation %}\n"
    "            {{- ns.text ~ '<|im_end|>' }}\n"
    "        {%- endgeneration %}\n"
    "        {{- '\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>' ~ message.role ~ '\\n' ~ ns.text ~ '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
