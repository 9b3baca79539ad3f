"""A raster result: the script writes a file, logger.upload stores it with the execution, and
the results carry the artifact's link (a signed URL that downloads without a token) and its
`uri` in te_schemas' URI shape, ready for a RasterResults.

The raster is an ESRI ASCII grid (plain text that GDAL and QGIS open), so the example needs
no GDAL; a real script writes a GeoTIFF with GDAL or rasterio and uploads it the same way."""

import os
import tempfile


def write_gradient(path, size):
    with open(path, "w") as grid:
        grid.write(f"ncols {size}\nnrows {size}\nxllcorner 0\nyllcorner 0\ncellsize 1\n")
        grid.write("NODATA_value -9999\n")
        for row in range(size):
            grid.write(" ".join(str(row + column) for column in range(size)) + "\n")


def run(params, logger):
    size = params.get("size", 16)
    path = os.path.join(tempfile.mkdtemp(), "gradient.asc")
    write_gradient(path, size)
    logger.info(f"wrote a {size} x {size} grid, uploading it")
    artifact = logger.upload(path, media_type="text/plain")
    return {
        "name": "gradient",
        "type": "RasterResults",
        "rasters": {"gradient": {"uri": artifact["uri"], "url": artifact["url"]}},
    }
