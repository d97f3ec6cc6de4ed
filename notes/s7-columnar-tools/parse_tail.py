# ruff: noqa  (a measurement script, not package code)
import re, sys
rows = {}; cur = None
for line in open(sys.argv[1]):
    if line.startswith('=='):
        cur = line.split()[1]; rows.setdefault(cur, []).append({'ev': [], 'info': []}); continue
    if cur is None: continue
    m = re.match(r'\s+(\d+)\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$', line)
    if m: rows[cur][-1]['ev'].append((m.group(1), m.group(2), float(m.group(5))))
    elif line.split() and line.split()[0] in ('wall', 'last', 'peak'): rows[cur][-1]['info'].append(line.strip())
for v, runs in rows.items():
    for r in runs:
        get = lambda label: [d for w, l, d in r['ev'] if l == label]
        print(f"{v:5} finish {get('finish')} track_both_ways {get('track_both_ways')} passes {get('track_pass')} labels {get('labels table (proj)')} flags {get('review_flags')} submit {get('submit backward')} | {'; '.join(r['info'])}")
