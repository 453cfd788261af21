"""Applications on top of rooms: their business rules live here, never in the media plane."""
