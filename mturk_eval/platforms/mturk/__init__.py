"""MTurk behind the crowd-platform interface: boto3 client factory (client), retries (retry), fees (fees),
qualification requirements (quals), QuestionFormAnswers parsing (answers), the platform (platform)."""
