#!/usr/bin/env python3
"""Makes chat_template_renders.json, the reference renders that
libs/data/chat_template_test checks Lethe's hand-written chat templates
against. Not part of the build; run by hand.

Each model's real chat template is rendered by two Jinja engines:
  - Python's Jinja2, configured as transformers' apply_chat_template
    configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
    loopcontrols, raise_exception, tojson, strftime_now): what transformers
    renders. Its result is the reference (`rendered`, or `error` for a
    template that raises).
  - npm @huggingface/jinja (an independent JavaScript implementation), run
    through node. Where it disagrees, the case also records its result as
    `huggingface_jinja` (Llama 2's empty system message, where
    @huggingface/jinja takes "" != false as false; trimming U+0085 and U+FEFF,
    which JavaScript's trim treats differently from Python's str.strip).

  mkdir -p /tmp/chatref && cd /tmp/chatref && npm init -y &&
    npm install @huggingface/jinja@0.5.11
  pip install jinja2==3.1.6   # if python3 lacks it
  CHATREF=/tmp/chatref LETHE_SHARED_DIR=/work/shared \
    python3 libs/data/testdata/make_chat_template_renders.py \
      /tmp/chatref/templates libs/data/testdata/chat_template_renders.json

The templates are read from TEMPLATE_DIR (and Llama 3.2's from
$LETHE_SHARED_DIR/data/tokenizers/llama3/tokenizer_config.json); their text is
not committed, only what they render and their sha256. Each is a model's
tokenizer_config.json `chat_template` as vendored by another project:
  llama31.jinja      meta-llama/Llama-3.1-8B-Instruct, from huggingface/
                     huggingface.js packages/jinja/test/e2e.test.js
  qwen25.jinja       Qwen/Qwen2.5-7B-Instruct, same file
  zephyr.jinja       HuggingFaceH4/zephyr-7b-beta, same file
  llama2.jinja       transformers' Llama chat template ("llama" in the same
                     file), rendered with USE_DEFAULT_PROMPT undefined: no
                     default system prompt, as in Llama-2-chat's own
  chatml.jinja       transformers' ChatML default ("_base", same file)
  mistral_v02.jinja  mistralai/Mistral-7B-Instruct-v0.2's "v1" template (with
                     a system prompt), ggml-org/llama.cpp
                     tests/test-chat-template.cpp
  phi35.jinja        microsoft/Phi-3.5-mini-instruct, llama.cpp
                     models/templates/microsoft-Phi-3.5-mini-instruct.jinja
  gemma2.jinja       google/gemma-2-2b-it, llama.cpp
                     models/templates/google-gemma-2-2b-it.jinja
  gemma3.jinja       google/gemma-3-*-it, the tokenizer_config.json text
                     quoted in the Berkeley function-calling leaderboard's
                     Gemma handler
Where a family has several templates (Llama 3.1 and 3.2), all must render
alike; the script stops when they do not.
"""

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# family -> real templates, and the tokenizer's special-token texts
# (tokenizer_config.json's bos_token and eos_token).
FAMILIES = {
    "llama3": {
        "templates": ["llama32", "llama31"],
        # Without date_string, Llama 3.2's template renders today's date
        # (strftime_now, which both engines define) and 3.1's its fixed
        # "26 Jul 2024": only 3.1 renders those cases.
        "dateless": ["llama31"],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
    },
    "llama2": {"templates": ["llama2"], "bos": "<s>", "eos": "</s>"},
    "qwen2.5": {"templates": ["qwen25"], "bos": None, "eos": "<|im_end|>"},
    "chatml": {"templates": ["chatml"], "bos": None, "eos": "<|im_end|>"},
    "mistral": {"templates": ["mistral_v02"], "bos": "<s>", "eos": "</s>"},
    "zephyr": {"templates": ["zephyr"], "bos": "<s>", "eos": "</s>"},
    "phi3": {"templates": ["phi35"], "bos": "<s>", "eos": "<|endoftext|>"},
    "gemma": {"templates": ["gemma2"], "bos": "<bos>", "eos": "<eos>"},
    "gemma3": {"templates": ["gemma3"], "bos": "<bos>", "eos": "<eos>"},
}

# A TOFU pair (full.json, line 1) and open-unlearning's system prompt.
SYSTEM = "You are a helpful assistant."
Q = ("Who is this celebrated LGBTQ+ author from Santiago, Chile known for "
     "their true crime genre work?")
A = ("The author in question is Jaime Vasquez, an esteemed LGBTQ+ writer who "
     "hails from Santiago, Chile and specializes in the true crime genre.")


def msg(role, content):
    return {"role": role, "content": content}


# name, messages, add_generation_prompt, date_string (None: not passed).
CASES = [
    # open-unlearning's prompt and full example, with its Llama 3 date.
    ("system_user_generation", [msg("system", SYSTEM), msg("user", Q)], True,
     "10 Apr 2025"),
    ("system_user_assistant",
     [msg("system", SYSTEM), msg("user", Q), msg("assistant", A)], False,
     "10 Apr 2025"),
    # No system prompt (open-unlearning's Gemma config has none).
    ("user_generation", [msg("user", Q)], True, None),
    ("user_assistant", [msg("user", Q), msg("assistant", A)], False, None),
    ("user_no_generation", [msg("user", Q)], False, None),
    # A system message with empty text, and no date (the template's default).
    ("empty_system_user_generation", [msg("system", ""), msg("user", Q)], True,
     None),
    # Whitespace around the texts: some templates trim, some do not.
    ("untrimmed_texts",
     [msg("system", "  Be brief.\n"), msg("user", "\n Who? \t"),
      msg("assistant", " Nobody.  \n")], False, "1 Jan 2030"),
    # Unicode whitespace: Python's str.strip (Jinja2's trim) removes all of
    # these; JavaScript's trim keeps U+0085 and strips U+FEFF.
    ("unicode_whitespace",
     [msg("user", "\u00a0\u2003Who?\u3000\u0085"),
      msg("assistant", "\ufeffHer.\u200a")], False, None),
    # Several turns (in-context examples).
    ("two_turns",
     [msg("system", SYSTEM), msg("user", "Who?"), msg("assistant", "Her."),
      msg("user", Q)], True, "10 Apr 2025"),
    ("two_turns_no_system",
     [msg("user", "Who?"), msg("assistant", "Her."), msg("user", Q),
      msg("assistant", A)], False, None),
]

# Renders a list of {template, data} with @huggingface/jinja.
NODE_RENDER = r"""
const path = require('path');
const {createRequire} = require('module');
const req = createRequire(path.join(process.env.CHATREF || '.', 'x.js'));
const {Template} = req('@huggingface/jinja');
const jobs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(jobs.map(({template, data}) => {
  try {
    return {rendered: new Template(template).render(data)};
  } catch (e) {
    return {error: String(e.message)};
  }
})));
"""


def transformers_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None,
               sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    return env


def read_template(template_dir, shared, name):
    if name == "llama32":
        path = os.path.join(shared, "data/tokenizers/llama3",
                            "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            return json.load(f)["chat_template"]
    with open(os.path.join(template_dir, name + ".jinja"),
              encoding="utf-8") as f:
        return f.read()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_chat_template_renders.py TEMPLATE_DIR OUT")
    template_dir, out_path = sys.argv[1:]
    shared = os.environ.get("LETHE_SHARED_DIR", "../shared")
    chatref = os.environ.get("CHATREF", ".")
    with open(os.path.join(chatref, "node_modules/@huggingface/jinja",
                           "package.json")) as f:
        js_version = json.load(f)["version"]
    env = transformers_environment()

    out = {
        "generator": "libs/data/testdata/make_chat_template_renders.py",
        "engine": "jinja2 %s (configured as transformers' "
                  "apply_chat_template)" % jinja2.__version__,
        "checked_with": "@huggingface/jinja " + js_version,
        "families": {},
        "cases": [],
    }
    jobs = []  # (case index, template name, template, data)
    for family_name, family in FAMILIES.items():
        texts = {name: read_template(template_dir, shared, name)
                 for name in family["templates"]}
        out["families"][family_name] = {
            "bos_token": family["bos"],
            "eos_token": family["eos"],
            "templates": [
                {"file": name,
                 "sha256": hashlib.sha256(
                     texts[name].encode("utf-8")).hexdigest()}
                for name in family["templates"]],
        }
        for case_name, messages, generation, date_string in CASES:
            used = [name for name in family["templates"]
                    if date_string is not None or "dateless" not in family or
                    name in family["dateless"]]
            data = {"messages": messages,
                    "add_generation_prompt": generation,
                    "bos_token": family["bos"], "eos_token": family["eos"]}
            if date_string is not None:
                data["date_string"] = date_string
            results = []
            for name in used:
                try:
                    result = {"rendered":
                              env.from_string(texts[name]).render(**data)}
                except jinja2.exceptions.TemplateError as e:
                    result = {"error": str(e)}
                results.append(result)
            for name, result in zip(used[1:], results[1:]):
                if result != results[0]:
                    sys.exit("%s/%s: %s and %s render differently" %
                             (family_name, case_name, used[0], name))
            case = {"family": family_name, "case": case_name,
                    "messages": messages, "add_generation_prompt": generation,
                    "templates": used}
            if date_string is not None:
                case["date_string"] = date_string
            case.update(results[0])
            out["cases"].append(case)
            for name in used:
                jobs.append((len(out["cases"]) - 1, name,
                             {"template": texts[name], "data": data}))

    js = subprocess.run(
        ["node", "-e", NODE_RENDER],
        input=json.dumps([job[2] for job in jobs]), capture_output=True,
        text=True, check=True, env=dict(os.environ, CHATREF=chatref))
    differ = 0
    for (index, name, _), js_result in zip(jobs, json.loads(js.stdout)):
        case = out["cases"][index]
        ours = {k: case[k] for k in ("rendered", "error") if k in case}
        if js_result != ours:
            differ += 1
            case["huggingface_jinja"] = js_result
            print("engines differ: %s/%s (%s)" %
                  (case["family"], case["case"], name))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("%d renders written to %s; the engines differ on %d" %
          (len(out["cases"]), out_path, differ))


if __name__ == "__main__":
    main()
