"""Lake Shore Cryotronics instruments: the Model 218 temperature monitor."""
