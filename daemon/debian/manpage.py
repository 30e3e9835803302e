#!/usr/bin/env python3
"""Writes the man pages rapportd(8) and rapportctl(1), gzipped as Debian wants them, from the
programs' own --help text (CLI11's layout), so every flag and subcommand is covered and the pages
cannot drift from the binaries.

    manpage.py RAPPORTD RAPPORTCTL VERSION DATE OUTDIR
"""
import gzip
import re
import subprocess
import sys


def help_text(argv):
    out = subprocess.run(argv + ["--help"], check=True, capture_output=True, text=True).stdout
    # CLI11 prints the program as invoked; the page names it plainly.
    return out.replace(argv[0], argv[0].rsplit("/", 1)[-1])


def esc(text):
    """Escapes text for roff: backslashes, hyphens (as real minus signs), and a leading dot/quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def parse(text):
    """Splits CLI11 help into (description lines, usage, options, subcommands)."""
    lines = text.splitlines()
    description, usage, options, subcommands = [], "", [], []
    section = "description"
    for line in lines:
        if line.startswith("Usage:"):
            usage, section = line[len("Usage:"):].strip(), "usage"
            continue
        if line in ("Options:", "Subcommands:", "Positionals:"):
            section = line[:-1].lower()
            continue
        if not line.strip():
            continue
        if section == "description":
            description.append(line.strip())
        elif section in ("options", "positionals"):
            m = re.match(r"^  (\S(?:.*?\S)?)(?:\s{2,}(\S.*))?$", line)
            if line.startswith("  ") and not line.startswith("    ") and m:
                options.append([m.group(1), m.group(2) or ""])
            elif options:  # continuation of the previous entry's description
                options[-1][1] = (options[-1][1] + " " + line.strip()).strip()
        elif section == "subcommands":
            m = re.match(r"^  (\S+)\s{2,}(\S.*)$", line)
            if m:
                subcommands.append([m.group(1), m.group(2)])
            elif subcommands:
                subcommands[-1][1] += " " + line.strip()
    return description, usage, options, subcommands


def option_item(spec, desc):
    # "-c,--config TEXT:FILE" -> bold flags, italic argument type.
    flags, _, arg = spec.partition(" ")
    head = "\\fB" + esc(flags.replace(",", ", ")) + "\\fR"
    if arg:
        head += " \\fI" + esc(arg) + "\\fR"
    return [".TP", head, esc(desc)]


def page(name, section, title, summary, description, synopsis, body):
    out = [
        '.TH %s %s "%s" "rapport %s" "%s"' % (name.upper(), section, DATE, VERSION, title),
        ".SH NAME",
        "%s \\- %s" % (name, esc(summary)),
        ".SH SYNOPSIS",
    ]
    out += synopsis
    out += [".SH DESCRIPTION"]
    for para in description:
        out += [".PP", esc(para)]
    out += body
    return "\n".join(out) + "\n"


def write(path, text):
    with open(path, "wb") as f:
        f.write(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def rapportd_page(binary):
    description, _, options, _ = parse(help_text([binary]))
    body = [".SH OPTIONS"]
    for spec, desc in options:
        body += option_item(spec, desc)
    body += [
        ".SH FILES",
        ".TP", "\\fI/etc/rapport/rapport.toml\\fR",
        "The configuration (every key optional); the package marks it as a conffile, so upgrades keep local edits.",
        ".TP", "\\fI/var/lib/rapport\\fR",
        "The state directory under systemd (StateDirectory=rapport): the LMDB environment with the journal, "
        "customers, events, the value model and dead letters. Back it up with \\fBrapportctl backup\\fR.",
        ".SH SIGNALS",
        ".TP", "\\fBSIGHUP\\fR",
        "Reload weights, tokens and limits from the config file without dropping connections.",
        ".TP", "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
        "Drain: stop accepting, commit and acknowledge what was received, then exit 0.",
        ".SH EXIT STATUS",
        "0 after a clean shutdown or a valid \\fB\\-\\-check\\-config\\fR; 2 for a usage or configuration error; "
        "1 for a fatal run-time error (e.g. the state directory cannot be opened).",
        ".SH SEE ALSO",
        "\\fBrapportctl\\fR(1), \\fBsystemctl\\fR(1),",
        "\\fI/usr/share/doc/rapport/README.md\\fR, \\fI/usr/share/doc/rapport/config.md\\fR",
    ]
    synopsis = [".B rapportd", "[\\fIOPTIONS\\fR]"]
    return page("rapportd", "8", "System Administration", "customer-interaction scoring daemon",
                description[1:] if len(description) > 1 else description, synopsis, body)


def subcommand_section(binary, path, depth):
    """The subsection of `rapportctl PATH...`, recursing into nested subcommands."""
    description, _, options, subcommands = parse(help_text([binary] + path))
    out = [".SS " + esc(" ".join(path))]
    for para in description:
        out += [".PP", esc(para)]
    shown = [(s, d) for s, d in options if not s.startswith("-h,")]
    if shown:
        out += [".PP", "Options:", ".RS"]
        for spec, desc in shown:
            out += option_item(spec, desc)
        out += [".RE"]
    for sub, _ in subcommands:
        out += subcommand_section(binary, path + [sub], depth + 1)
    return out


def rapportctl_page(binary):
    description, _, options, subcommands = parse(help_text([binary]))
    body = [".SH OPTIONS"]
    for spec, desc in options:
        body += option_item(spec, desc)
    body += [".SH COMMANDS"]
    for sub, _ in subcommands:
        body += subcommand_section(binary, [sub], 1)
    body += [
        ".SH ENVIRONMENT",
        ".TP", "\\fBRAPPORT_TOKEN\\fR",
        "Bearer token for \\fB\\-\\-url\\fR when \\fB\\-\\-token\\fR is not given.",
        ".SH EXIT STATUS",
        "0 ok; 1 not found or partial (e.g. some lines rejected); 2 usage or fatal error. "
        "Messages go to standard error, prefixed \\fBrapportctl:\\fR.",
        ".SH SEE ALSO",
        "\\fBrapportd\\fR(8), \\fI/usr/share/doc/rapport/README.md\\fR",
    ]
    synopsis = [".B rapportctl", "\\fISUBCOMMAND\\fR [\\fIOPTIONS\\fR]"]
    return page("rapportctl", "1", "User Commands", "admin CLI of the Rapport scoring daemon",
                description[1:] if len(description) > 1 else description, synopsis, body)


if __name__ == "__main__":
    rapportd, rapportctl, VERSION, DATE, outdir = sys.argv[1:6]
    write(outdir + "/rapportd.8.gz", rapportd_page(rapportd))
    write(outdir + "/rapportctl.1.gz", rapportctl_page(rapportctl))
