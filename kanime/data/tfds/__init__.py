"""TensorFlow Datasets builders for kanime's face datasets.

Importing `kanime.data.tfds.kanime_faces` registers the `kanime_faces` builder with
`tfds` (this package itself imports nothing heavy).
"""
