"""
Reference fixture for FFHQ alignment (test/fixtures/photos/), made by encoder4editing's utils/alignment.py.

Run with /usr/bin/python3 (numpy, PIL, scipy: Debian's python3-scipy), from the repository root:
    git -C <bare clone of omertov/encoder4editing> archive HEAD utils/alignment.py | tar -x -C /tmp/e4e_ref
    /usr/bin/python3 tools/make_align_fixture.py /tmp/e4e_ref

align_face is run as it is, with two stand-ins: dlib is absent, so get_landmark returns the 68 points of
astronaut_landmarks.json (face-api's, which our detector gives; the same points feed our alignment), and
output_size/transform_size (256 in that file) are set per case by rewriting those two assignments.
Pillow 10 dropped Image.ANTIALIAS; it is LANCZOS.

Cases (inputs and outputs in test/fixtures/photos/):
  astronaut_aligned_256.png   astronaut.png at 256: crop and quad warp only
  astronaut_edge.png          a crop of the astronaut that cuts the face, scaled ×3 (so the square leaves
                              the photo and is over twice the output): input of the next one
  astronaut_edge_aligned_128.png   at 128: shrink, crop, reflect pad with blur and median fade, warp
"""
import json
import os
import sys
import types

import numpy as np
import PIL.Image

ref = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else '/tmp/e4e_ref')
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'photos')
if not hasattr(PIL.Image, 'ANTIALIAS'):
    PIL.Image.ANTIALIAS = PIL.Image.LANCZOS
sys.modules['dlib'] = types.ModuleType('dlib')
src = open(os.path.join(ref, 'utils', 'alignment.py')).read()
assert '    output_size = 256\n    transform_size = 256\n' in src

lm = np.array(json.load(open(os.path.join(here, 'astronaut_landmarks.json'))))


def align(photo, landmarks, size):
    ns = {}
    code = src.replace('    output_size = 256\n    transform_size = 256\n', f'    output_size = {size}\n    transform_size = {size}\n')
    exec(compile(code, 'alignment.py', 'exec'), ns)
    ns['get_landmark'] = lambda filepath, predictor: landmarks
    return ns['align_face'](photo, None)


align(os.path.join(here, 'astronaut.png'), lm, 256).save(os.path.join(here, 'astronaut_aligned_256.png'))

# The edge case: cut at (120, 40) 220×200, scaled ×3 with PIL's bicubic; the landmarks follow.
img = PIL.Image.open(os.path.join(here, 'astronaut.png')).convert('RGB')
edge = img.crop((120, 40, 340, 240)).resize((660, 600), PIL.Image.BICUBIC)
edge_file = os.path.join(here, 'astronaut_edge.png')
edge.save(edge_file)
lm_edge = (lm - [120, 40]) * 3
align(edge_file, lm_edge, 128).save(os.path.join(here, 'astronaut_edge_aligned_128.png'))
print('ok')
