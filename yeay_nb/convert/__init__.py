"""Converters from raw annotation formats to one COCO instances json.

- :mod:`.vg`  Visual Genome (objects.json / attributes.json, image_data.json), streamed.
- :mod:`.ccp` Clothing Co-Parsing pixel-level label maps -> instance RLE masks.
- :mod:`.coco` writing, splits and summaries shared by both.
"""
