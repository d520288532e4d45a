"""Reading and writing EO imagery: images, masks, datasets and large rasters."""
