# The domain event bus. sale-capture publishes with source "pos.capture" and detail-type
# SaleCompleted | ReturnCompleted | StockAdjusted | SaleAwaitingEnrichment.
resource "aws_cloudwatch_event_bus" "pos" {
  name = "${local.prefix}-pos"
}

# Every event is archived so consumers can be replayed after an incident or a bug fix.
resource "aws_cloudwatch_event_archive" "pos" {
  name             = "${local.prefix}-pos-archive"
  event_source_arn = aws_cloudwatch_event_bus.pos.arn
  retention_days   = 30
  description      = "Replay source for the pos bus"
}
