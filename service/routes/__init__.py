"""One APIRouter per family, plus health and model listing."""
